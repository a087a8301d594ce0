// A linked worktree (`git worktree add`) as the workspace, in a real Docker bottle run by the built
// claude-bottle: git works inside (status, commit, log) because the main repository's common git dir
// is mounted at its own path, the commit shows in the main repository on the host, and the common
// dir's config, hooks and the other worktrees' admin files stay out of the bottle's reach.
import { mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runClaudeBottle } from "./claude-bottle-process.js";

let root: string;
let main: string;
let worktree: string;
let common: string;
let marker: string;

/** git on the host. As root on folders another user owns, git refuses them (safe.directory) unless told. */
const hostGit = (cwd: string, ...args: string[]) =>
  execa("git", ["-c", "safe.directory=*", ...args], { cwd, reject: false });

/** What the agent does: ordinary work that must succeed, then attacks that must fail (ATTACK… if one works). */
const script = `
set -u
common="$2"
git status --short > /dev/null || echo "BROKEN: git status failed"
echo "from the bottle" > inside.txt
git add inside.txt || echo "BROKEN: git add failed"
git -c user.name=agent -c user.email=agent@example.com commit -qm "made in the worktree" || echo "BROKEN: git commit failed"
git log --format=%s -1 | grep -qx "made in the worktree" || echo "BROKEN: git log does not show the commit"
git config core.fsmonitor "touch $1" 2>/dev/null && echo "ATTACK: core.fsmonitor set in the common config"
git config --file "$common/config" core.hooksPath /tmp 2>/dev/null && echo "ATTACK: core.hooksPath set"
printf '#!/bin/sh\\ntouch %s\\n' "$1" > "$common/hooks/post-checkout" 2>/dev/null && echo "ATTACK: hook written"
mv "$common/hooks" "$common/hooks-moved" 2>/dev/null && echo "ATTACK: hooks moved away"
mv "$common/config" "$common/config-moved" 2>/dev/null && echo "ATTACK: config moved away"
echo "/elsewhere" > "$common/worktrees/other/commondir" 2>/dev/null && echo "ATTACK: other worktree's commondir changed"
echo "/elsewhere/.git" > "$common/worktrees/other/gitdir" 2>/dev/null && echo "ATTACK: other worktree's gitdir changed"
exit 0
`;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-worktree-it-"));
  main = join(root, "main");
  worktree = join(root, "feature");
  common = join(main, ".git");
  marker = join(root, "pwned");
  await mkdir(main);
  await execa("git", ["init", "-q", "-b", "main"], { cwd: main });
  await execa(
    "git",
    ["-c", "user.name=u", "-c", "user.email=u@example.com", "commit", "-q", "--allow-empty", "-m", "first"],
    {
      cwd: main,
    },
  );
  await execa("git", ["worktree", "add", "-q", worktree], { cwd: main });
  await execa("git", ["worktree", "add", "-q", join(root, "other")], { cwd: main });
  // As root, claude-bottle runs the agent as the workspace's owner: make that a regular user.
  if (process.getuid?.() === 0) await execa("chown", ["-R", "1001:1001", root]);
});
afterAll(() => rm(root, { recursive: true, force: true }));

const shell = (args: string[]) =>
  runClaudeBottle(["shell", "-q", ...args], { cwd: worktree, dataDir: join(root, "data") });

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

describe("a linked worktree as the workspace of a Docker bottle", () => {
  it("shows the common git dir's mount and its protected files in --dry-run", async () => {
    const { exitCode, stdout, stderr } = await shell(["--dry-run", "--", "sh"]);
    expect(exitCode, stderr).toBe(0);
    const { spec } = JSON.parse(stdout);
    expect(spec.mounts).toEqual([{ source: common, target: common, readOnly: false }]);
    expect(spec.readOnlyPaths).toEqual(
      expect.arrayContaining([
        join(common, "config"),
        join(common, "hooks"),
        join(common, "worktrees", "other", "commondir"),
        join(common, "worktrees", "other", "gitdir"),
        join(worktree, ".git"),
      ]),
    );
  });

  it("commits inside, and the commit shows in the main repository on the host; git's config and hooks stay out of reach", async () => {
    const configBefore = await readFile(join(common, "config"), "utf8");
    const { exitCode, stdout, stderr } = await shell(["--", "sh", "-c", script, "sh", marker, common]);

    expect(exitCode, stderr).toBe(0);
    expect(stdout).not.toContain("BROKEN");
    expect(stdout).not.toContain("ATTACK");
    // Nothing changed in what the host executes, so the report after the run has nothing to say.
    expect(stderr).not.toContain("while the bottle ran");

    const log = await hostGit(main, "log", "--format=%s", "feature");
    expect(log.stdout.split("\n")).toEqual(["made in the worktree", "first"]);
    expect((await hostGit(worktree, "status", "--short")).stdout).toBe("");
    expect(await readFile(join(common, "config"), "utf8")).toBe(configBefore);
    expect(await exists(join(common, "hooks", "post-checkout"))).toBe(false);
    expect((await readFile(join(common, "worktrees", "other", "gitdir"), "utf8")).trim()).toBe(
      join(root, "other", ".git"),
    );
    // The host's git, in every worktree, runs nothing the bottle put there.
    await hostGit(main, "status");
    await hostGit(worktree, "checkout", "-q", "HEAD~1");
    await hostGit(join(root, "other"), "status");
    expect(await exists(marker)).toBe(false);
  });

  it("names what no mount can stop: a commondir planted in the main repository's git dir", async () => {
    // It does not exist beforehand, so nothing is mounted over it; git in the main worktree would
    // then read the config of the folder it names. The report after the run is the backstop.
    const { exitCode, stderr } = await shell([
      "--",
      "sh",
      "-c",
      'echo /elsewhere > "$1/commondir"',
      "sh",
      common,
    ]);
    try {
      expect(exitCode, stderr).toBe(0);
      expect(stderr).toContain(
        `claude-bottle: warning: ${join(common, "commondir")} was created while the bottle ran; it makes git read another repository's config and hooks`,
      );
    } finally {
      await rm(join(common, "commondir"), { force: true });
    }
  });
});
