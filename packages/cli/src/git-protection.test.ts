import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gitProtectionWarnings, watchHostExecuted } from "./git-protection.js";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-git-protection-"));
});
afterEach(() => rm(root, { recursive: true, force: true }));

describe("gitProtectionWarnings", () => {
  it("is silent while git.protect is on (a backend that can't keep the paths read-only is capabilityGaps' to report)", () => {
    expect(gitProtectionWarnings(true)).toEqual([]);
  });

  it("warns before the run when git.protect is off, naming where it was set", () => {
    expect(gitProtectionWarnings(false, "/u/config.json")[0]).toMatch(
      /^git\.protect is false \(\/u\/config\.json\): the bottle can change \.git\/config/,
    );
  });
});

describe("watchHostExecuted", () => {
  it("names what changed in git's executable files since it started", async () => {
    await execa("git", ["init", "-q"], { cwd: root });
    const report = await watchHostExecuted(root);
    expect(await report()).toEqual([]);
    await writeFile(join(root, ".git", "hooks", "post-checkout"), "#!/bin/sh\n", { mode: 0o755 });
    expect(await report()).toEqual([
      `${join(root, ".git", "hooks", "post-checkout")} was created while the bottle ran; git on this machine runs hooks: inspect or delete it before you run git here`,
    ]);
  });
});
