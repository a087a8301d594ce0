// The bottle attacks git on the host: from inside a real Docker bottle (the built claude-bottle,
// `shell -- sh -c …`) it tries to make the user's next `git status` run a command. By default
// every way in through .git/config, .git/hooks and .gitmodules fails inside, the host's git runs
// nothing, and git still works inside; what can't be made read-only (a repository planted in a
// subfolder) is named after the run. With git.protect off the same attack goes through — proof
// that it is real — and claude-bottle warns before and reports after.
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { runClaudeBottle } from "./claude-bottle-process.js";

let root: string;
let workspace: string;
let marker: string;
const asRoot = process.getuid?.() === 0;

/** git on the host, as the user runs it. As root on a folder another user owns, git would refuse it (safe.directory) and run nothing, which proves nothing; so it is told to trust it. */
const hostGit = (...args: string[]) =>
  execa("git", ["-c", "safe.directory=*", ...args], { cwd: workspace, reject: false });

/** Every attack the agent tries, each printing ATTACK… when it works; then ordinary work that must. */
const attacks = `
set -u
git config core.fsmonitor "touch $1" && echo "ATTACK: core.fsmonitor set"
git config core.hooksPath /tmp && echo "ATTACK: core.hooksPath set"
printf '#!/bin/sh\\ntouch %s\\n' "$1" > .git/hooks/post-checkout && echo "ATTACK: hook written"
printf '[submodule "x"]\\n\\tpath = x\\n\\turl = ext::sh -c touch\\\\ %s\\n' "$1" >> .gitmodules && echo "ATTACK: .gitmodules changed"
mv .git .git-moved && echo "ATTACK: .git moved away"
mv .git/config .git/config-moved && echo "ATTACK: config moved away"
git -C vendor/lib config core.fsmonitor "touch $1" && echo "ATTACK: a nested repository's config changed"
echo inside >> notes.txt || echo "BROKEN: notes.txt not writable"
git -c user.name=agent -c user.email=agent@example.com commit -qam "made inside" || echo "BROKEN: git commit failed"
mkdir -p planted && git -C planted init -q && git -C planted config core.fsmonitor "touch $1"
exit 0
`;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-git-guard-it-"));
  await mkdir(join(root, "xdg"));
});
afterAll(() => rm(root, { recursive: true, force: true }));

beforeEach(async () => {
  workspace = join(root, `project-${Math.random().toString(16).slice(2, 8)}`);
  marker = join(root, `pwned-${Math.random().toString(16).slice(2, 8)}`);
  await mkdir(workspace);
  await execa("git", ["init", "-q"], { cwd: workspace });
  await writeFile(join(workspace, "notes.txt"), "first\n");
  await writeFile(join(workspace, ".gitmodules"), "");
  await execa("git", ["add", "."], { cwd: workspace });
  await execa("git", ["-c", "user.name=u", "-c", "user.email=u@example.com", "commit", "-qm", "first"], {
    cwd: workspace,
  });
  // A repository of its own inside the project (a vendored checkout), not part of the outer one.
  await mkdir(join(workspace, "vendor", "lib"), { recursive: true });
  await execa("git", ["init", "-q"], { cwd: join(workspace, "vendor", "lib") });
  await writeFile(join(workspace, ".git", "info", "exclude"), "vendor/\n");
  if (asRoot) await execa("chown", ["-R", "1001:1001", workspace]);
});

function shell(script: string, env: NodeJS.ProcessEnv = {}) {
  return runClaudeBottle(["shell", "-q", "--", "sh", "-c", script, "sh", marker], {
    cwd: workspace,
    dataDir: join(root, "data"),
    env: { XDG_CONFIG_HOME: join(root, "xdg"), ...env },
  });
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

describe("git on the host, attacked from inside a Docker bottle", () => {
  it("keeps .git/config, .git/hooks and .gitmodules read-only; git still commits inside; a planted repository is named", async () => {
    const configBefore = await readFile(join(workspace, ".git", "config"), "utf8");
    const { exitCode, stdout, stderr } = await shell(attacks);

    expect(exitCode, stderr).toBe(0);
    expect(stdout).not.toContain("ATTACK");
    expect(stdout).not.toContain("BROKEN");
    expect(await readFile(join(workspace, ".git", "config"), "utf8")).toBe(configBefore);
    expect(await readFile(join(workspace, ".gitmodules"), "utf8")).toBe("");
    expect(await exists(join(workspace, ".git", "hooks", "post-checkout"))).toBe(false);

    // The user's git on the host: the commit made inside is there, and nothing ran.
    const log = await hostGit("log", "--format=%s");
    expect(log.stdout.split("\n")).toEqual(["made inside", "first"]);
    await hostGit("status");
    await hostGit("checkout", "-q", "HEAD~1");
    await hostGit("-C", "vendor/lib", "status");
    expect(await exists(marker)).toBe(false);
    expect(await readFile(join(workspace, "notes.txt"), "utf8")).toBe("first\n");

    // The one way left (a repository of the bottle's own) is named, with what to do.
    expect(stderr).toContain(
      `claude-bottle: warning: a git repository appeared at ${join(workspace, "planted")} while the bottle ran`,
    );
    expect(stderr).not.toContain(`${join(workspace, ".git", "config")} was`);
  });

  it("with git.protect false lets the change through, warns before the run and names the file after it", async () => {
    // The user config, outside the workspace: the opt-out is the user's, never the project's.
    await mkdir(join(root, "xdg", "claude-bottle"), { recursive: true });
    await writeFile(
      join(root, "xdg", "claude-bottle", "config.json"),
      JSON.stringify({ git: { protect: false } }),
    );
    try {
      const { exitCode, stdout, stderr } = await shell(
        'git config core.fsmonitor "touch $1" && echo "config changed"',
      );
      expect(exitCode, stderr).toBe(0);
      expect(stdout).toContain("config changed");
      expect(stderr).toContain(
        `claude-bottle: warning: git.protect is false (${join(root, "xdg", "claude-bottle", "config.json")}): the bottle can change .git/config, .git/hooks and .gitmodules`,
      );
      expect(stderr).toContain(
        `claude-bottle: warning: ${join(workspace, ".git", "config")} was changed while the bottle ran; git on this machine runs commands set there (core.fsmonitor, core.hooksPath, core.sshCommand, aliases): inspect it with git -C ${workspace} config --local --list`,
      );
      // The attack is real: the host's next git status runs what the bottle set.
      await hostGit("status");
      expect(await exists(marker)).toBe(true);
    } finally {
      await rm(join(root, "xdg", "claude-bottle"), { recursive: true, force: true });
    }
  });
});
