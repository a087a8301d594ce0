import { describe, expect, it } from "vitest";
import { lineProgress } from "./progress.js";

describe("lineProgress", () => {
  it("prints a line when a step starts and when it ends, with its time", async () => {
    let text = "";
    const progress = lineProgress({ write: (chunk: string) => (text += chunk) });
    expect(await progress.step("build agent image", async () => 42)).toBe(42);
    await expect(progress.step("push", async () => Promise.reject(new Error("no")))).rejects.toThrow("no");
    expect(text.split("\n")).toEqual([
      "claude-bottle: build agent image…",
      expect.stringMatching(/^claude-bottle: build agent image: done in \d+\.\ds$/),
      "claude-bottle: push…",
      expect.stringMatching(/^claude-bottle: push: failed after \d+\.\ds$/),
      "",
    ]);
  });
});

describe("lineProgress with the engine's output", () => {
  it("prints each build step once, indented, and no RUN output or bookkeeping", async () => {
    let text = "";
    const progress = lineProgress({ write: (chunk: string) => (text += chunk) });
    await progress.step("build agent image", async () => {
      for (const line of [
        "Sending build context to Docker daemon  3.072kB",
        "Step 1/3 : FROM local/node:24-bookworm-slim",
        " ---> f548fcfcf4ce",
        'Step 2/3 : RUN npm install --global "@anthropic-ai/claude-code@2.1.332"',
        " ---> Running in f5083e04dfa9",
        "added 3 packages in 11s",
        "Step 3/3 : USER claude",
        "Successfully built 00f95c3e64fd",
      ])
        progress.detail?.(line);
    });
    expect(text.split("\n")).toEqual([
      "claude-bottle: build agent image…",
      "claude-bottle:   [1/3] FROM local/node:24-bookworm-slim",
      'claude-bottle:   [2/3] RUN npm install --global "@anthropic-ai/claude-code@2.1.332"',
      "claude-bottle:   [3/3] USER claude",
      expect.stringMatching(/^claude-bottle: build agent image: done in \d+\.\ds$/),
      "",
    ]);
  });

  it("prints transfer progress now and then, and where it ended", async () => {
    let text = "";
    const progress = lineProgress({ write: (chunk: string) => (text += chunk) });
    await progress.step("push to local registry", async () => {
      for (const line of [
        "3a50fdad0d4a: Preparing",
        "e21de3008f63: Preparing",
        "3a50fdad0d4a: Pushed",
        "e21de3008f63: Pushed",
      ])
        progress.detail?.(line);
    });
    expect(text.split("\n")).toEqual([
      "claude-bottle: push to local registry…",
      "claude-bottle:   pushed 0 of 1 layers",
      "claude-bottle:   pushed 2 of 2 layers",
      expect.stringMatching(/^claude-bottle: push to local registry: done in /),
      "",
    ]);
  });
});
