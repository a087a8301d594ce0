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
