import { describe, expect, it } from "vitest";
import { heldProgress, lineProgress } from "./progress.js";

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

describe("heldProgress", () => {
  const lines = (text: string) => text.split("\n").filter(Boolean);

  it("runs each step at once but shows it, with the output it gave, only once shown", async () => {
    let text = "";
    const progress = heldProgress(async () => lineProgress({ write: (chunk: string) => (text += chunk) }));
    let started = false;
    let finish: (value: string) => void = () => {};
    const step = progress.step("build agent image", () => {
      started = true;
      progress.detail?.("Step 1/2 : FROM local/node:24-bookworm-slim");
      return new Promise<string>((resolve) => {
        finish = resolve;
      });
    });
    expect(started).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(text).toBe("");
    progress.show();
    await new Promise((resolve) => setTimeout(resolve, 10));
    progress.detail?.("Step 2/2 : USER claude");
    finish("sha256:1");
    expect(await step).toBe("sha256:1");
    expect(await progress.step("gateway image", async () => "tag")).toBe("tag");
    expect(lines(text)).toEqual([
      "claude-bottle: build agent image…",
      "claude-bottle:   [1/2] FROM local/node:24-bookworm-slim",
      "claude-bottle:   [2/2] USER claude",
      expect.stringMatching(/^claude-bottle: build agent image: done in \d+\.\ds$/),
      "claude-bottle: gateway image…",
      expect.stringMatching(/^claude-bottle: gateway image: done in \d+\.\ds$/),
    ]);
  });

  it("shows a step that failed while held as failed", async () => {
    let text = "";
    const progress = heldProgress(async () => lineProgress({ write: (chunk: string) => (text += chunk) }));
    const step = progress.step("build agent image", async () => {
      throw new Error("no base image");
    });
    await new Promise((resolve) => setTimeout(resolve, 10));
    progress.show();
    await expect(step).rejects.toThrow("no base image");
    expect(lines(text)).toEqual([
      "claude-bottle: build agent image…",
      expect.stringMatching(/^claude-bottle: build agent image: failed after \d+\.\ds$/),
    ]);
  });

  it("after drop shows nothing and hands back what the step's work ends with", async () => {
    let opened = false;
    const progress = heldProgress(async () => {
      opened = true;
      return lineProgress({ write: () => {} });
    });
    const step = progress.step("build agent image", async () => {
      progress.detail?.("Step 1/2 : FROM local/node:24-bookworm-slim");
      throw new Error("stopped");
    });
    progress.drop();
    await expect(step).rejects.toThrow("stopped");
    expect(opened).toBe(false);
  });
});
