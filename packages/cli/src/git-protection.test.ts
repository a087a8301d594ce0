import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Backend, runSpecSchema } from "@claude-bottle/core";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gitProtectionWarnings, watchHostExecuted } from "./git-protection.js";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-git-protection-"));
});
afterEach(() => rm(root, { recursive: true, force: true }));

const backend = (name: string, readOnlyPaths?: boolean): Backend => ({
  name,
  ...(readOnlyPaths !== undefined && { capabilities: { readOnlyPaths } }),
  checkAvailability: async () => ({ available: true }),
  prepare: async () => undefined,
  run: async () => ({ exitCode: 0 }),
});

const spec = (readOnlyPaths: string[]) =>
  runSpecSchema.parse({ workspace: "/w", command: ["sh"], home: "/h", name: "b", readOnlyPaths });

describe("gitProtectionWarnings", () => {
  it("is silent when the backend keeps the paths read-only", () => {
    expect(gitProtectionWarnings(spec(["/w/.git/config"]), backend("docker", true), true)).toEqual([]);
  });

  it("warns before the run when the backend can't, and when git.protect is off", () => {
    expect(gitProtectionWarnings(spec(["/w/.git/config"]), backend("smolmachines"), true)).toEqual([
      "the smolmachines backend cannot keep .git/config, .git/hooks and .gitmodules read-only in the bottle; claude-bottle names every change to them after the run, read it before you run git here",
    ]);
    expect(gitProtectionWarnings(spec([]), backend("docker", true), false, "/u/config.json")[0]).toMatch(
      /^git\.protect is false \(\/u\/config\.json\): the bottle can change \.git\/config/,
    );
    // Nothing to protect (no repository): nothing to warn about.
    expect(gitProtectionWarnings(spec([]), backend("smolmachines"), true)).toEqual([]);
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
