import { chmod, mkdir, mkdtemp, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  gitDirProtectedPaths,
  gitProtectedPaths,
  hostExecutedChanges,
  hostHooksPath,
  linkedWorktreeOf,
  snapshotHostExecuted,
} from "./git-guard.js";

let root: string;
let workspace: string;

beforeEach(async () => {
  root = await realpath(await mkdtemp(join(tmpdir(), "cb-git-guard-")));
  workspace = join(root, "project");
  await mkdir(workspace);
});
afterEach(() => rm(root, { recursive: true, force: true }));

const git = (cwd: string, ...args: string[]) => execa("git", args, { cwd });

describe("gitProtectedPaths", () => {
  it("lists .git/config, .git/hooks and .gitmodules of a repository", async () => {
    await git(workspace, "init", "-q");
    await writeFile(join(workspace, ".gitmodules"), "");
    expect(await gitProtectedPaths(workspace)).toEqual([
      join(workspace, ".git", "config"),
      join(workspace, ".git", "hooks"),
      join(workspace, ".gitmodules"),
    ]);
  });

  it("lists nothing for a folder without a repository, and nothing that does not exist", async () => {
    expect(await gitProtectedPaths(workspace)).toEqual([]);
    await mkdir(join(workspace, ".git"));
    await writeFile(join(workspace, ".git", "config"), "[core]\n");
    expect(await gitProtectedPaths(workspace)).toEqual([join(workspace, ".git", "config")]);
  });

  it("covers commondir, config.worktree and submodules' git dirs", async () => {
    await git(workspace, "init", "-q");
    await writeFile(join(workspace, ".git", "config.worktree"), "");
    await writeFile(join(workspace, ".git", "commondir"), ".");
    const module = join(workspace, ".git", "modules", "lib");
    await mkdir(join(module, "hooks"), { recursive: true });
    await writeFile(join(module, "config"), "");
    expect(await gitProtectedPaths(workspace)).toEqual([
      join(workspace, ".git", "commondir"),
      join(workspace, ".git", "config"),
      join(workspace, ".git", "config.worktree"),
      join(workspace, ".git", "hooks"),
      join(module, "config"),
      join(module, "hooks"),
    ]);
  });

  it("follows a symlinked hooks folder inside the workspace and drops one that points outside", async () => {
    await git(workspace, "init", "-q");
    await rm(join(workspace, ".git", "hooks"), { recursive: true });
    await mkdir(join(workspace, "tools", "hooks"), { recursive: true });
    await symlink(join(workspace, "tools", "hooks"), join(workspace, ".git", "hooks"));
    expect(await gitProtectedPaths(workspace)).toContain(join(workspace, "tools", "hooks"));

    await rm(join(workspace, ".git", "hooks"));
    await mkdir(join(root, "outside-hooks"));
    await symlink(join(root, "outside-hooks"), join(workspace, ".git", "hooks"));
    expect(await gitProtectedPaths(workspace)).toEqual([join(workspace, ".git", "config")]);
  });

  it("protects a core.hooksPath inside the workspace (husky's .husky)", async () => {
    await git(workspace, "init", "-q");
    await mkdir(join(workspace, ".husky"));
    expect(await hostHooksPath(workspace)).toBe(join(workspace, ".git", "hooks"));
    await git(workspace, "config", "core.hooksPath", ".husky");
    expect(await hostHooksPath(workspace)).toBe(join(workspace, ".husky"));
    expect(await hostHooksPath(root)).toBeUndefined();
    expect(await gitProtectedPaths(workspace, { hooksPath: ".husky" })).toContain(join(workspace, ".husky"));
    expect(await gitProtectedPaths(workspace, { hooksPath: join(root, "elsewhere") })).not.toContain(
      join(root, "elsewhere"),
    );
  });

  it("pins a linked worktree's .git file; its common dir outside the workspace is left to whoever mounts it", async () => {
    const main = join(root, "main");
    await mkdir(main);
    await git(main, "init", "-q");
    await git(main, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "a");
    await rm(workspace, { recursive: true });
    await git(main, "worktree", "add", "-q", workspace);

    expect(await gitProtectedPaths(workspace)).toEqual([join(workspace, ".git")]);
    // The worktree's own git dir names the common dir, whose config and hooks count as well.
    const paths = await gitDirProtectedPaths(join(main, ".git", "worktrees", "project"));
    expect(paths).toEqual(
      expect.arrayContaining([
        join(main, ".git", "worktrees", "project", "commondir"),
        join(main, ".git", "config"),
        join(main, ".git", "hooks"),
      ]),
    );
    // When the common dir is mounted too, it is protected and watched like the workspace's own.
    const mountedGitDirs = [join(main, ".git")];
    expect(await gitProtectedPaths(workspace, { mountedGitDirs })).toEqual([
      join(main, ".git", "config"),
      join(main, ".git", "hooks"),
      join(main, ".git", "worktrees", "project", "commondir"),
      join(main, ".git", "worktrees", "project", "gitdir"),
      join(workspace, ".git"),
    ]);
    const before = await snapshotHostExecuted(workspace, { mountedGitDirs });
    await git(main, "config", "core.fsmonitor", "touch /tmp/x");
    const changes = hostExecutedChanges(
      workspace,
      before,
      await snapshotHostExecuted(workspace, { mountedGitDirs }),
    );
    expect(changes.map((c) => c.path)).toEqual([join(main, ".git", "config")]);
    expect(changes[0]!.message).toContain(`git -C ${main} config --local --list`);
  });

  it("protects repositories already in the project, and a submodule's .git file", async () => {
    await git(workspace, "init", "-q");
    await mkdir(join(workspace, "vendor", "lib"), { recursive: true });
    await git(join(workspace, "vendor", "lib"), "init", "-q");
    await mkdir(join(workspace, "sub"));
    await writeFile(join(workspace, "sub", ".git"), "gitdir: ../.git/modules/sub\n");
    await mkdir(join(workspace, ".git", "modules", "sub", "hooks"), { recursive: true });
    await writeFile(join(workspace, ".git", "modules", "sub", "config"), "");
    await mkdir(join(workspace, "node_modules", "pkg"), { recursive: true });
    await git(join(workspace, "node_modules", "pkg"), "init", "-q");
    expect(await gitProtectedPaths(workspace)).toEqual([
      join(workspace, ".git", "config"),
      join(workspace, ".git", "hooks"),
      join(workspace, ".git", "modules", "sub", "config"),
      join(workspace, ".git", "modules", "sub", "hooks"),
      join(workspace, "sub", ".git"),
      join(workspace, "vendor", "lib", ".git", "config"),
      join(workspace, "vendor", "lib", ".git", "hooks"),
    ]);
  });

  it("protects the commondir of the repository's other worktrees, which git reads there", async () => {
    await git(workspace, "init", "-q");
    await git(
      workspace,
      "-c",
      "user.email=a@b",
      "-c",
      "user.name=a",
      "commit",
      "-q",
      "--allow-empty",
      "-m",
      "a",
    );
    await git(workspace, "worktree", "add", "-q", join(root, "elsewhere"));
    expect(await gitProtectedPaths(workspace)).toContain(
      join(workspace, ".git", "worktrees", "elsewhere", "commondir"),
    );
  });
});

describe("hostExecutedChanges", () => {
  it("says nothing when nothing changed", async () => {
    await git(workspace, "init", "-q");
    await writeFile(join(workspace, "file.txt"), "a");
    const before = await snapshotHostExecuted(workspace);
    await writeFile(join(workspace, "file.txt"), "b");
    expect(hostExecutedChanges(workspace, before, await snapshotHostExecuted(workspace))).toEqual([]);
  });

  it("names a changed .git/config and says how to inspect it", async () => {
    await git(workspace, "init", "-q");
    const before = await snapshotHostExecuted(workspace);
    await git(workspace, "config", "core.fsmonitor", "touch /tmp/x");
    const changes = hostExecutedChanges(workspace, before, await snapshotHostExecuted(workspace));
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ path: join(workspace, ".git", "config"), change: "changed" });
    expect(changes[0]!.message).toContain(`git -C ${workspace} config --local --list`);
  });

  it("names a new hook, a hook made executable, .gitmodules and commondir one by one", async () => {
    await git(workspace, "init", "-q");
    await writeFile(join(workspace, ".git", "hooks", "pre-commit"), "#!/bin/sh\n");
    const before = await snapshotHostExecuted(workspace);
    await writeFile(join(workspace, ".git", "hooks", "post-checkout"), "#!/bin/sh\ntouch /tmp/x\n");
    await chmod(join(workspace, ".git", "hooks", "pre-commit"), 0o755);
    await writeFile(join(workspace, ".gitmodules"), "[submodule]\n");
    await writeFile(join(workspace, ".git", "commondir"), "../elsewhere\n");
    const changes = hostExecutedChanges(workspace, before, await snapshotHostExecuted(workspace));
    expect(changes.map((c) => [c.path, c.change])).toEqual([
      [join(workspace, ".git", "commondir"), "created"],
      [join(workspace, ".git", "hooks", "post-checkout"), "created"],
      [join(workspace, ".git", "hooks", "pre-commit"), "changed"],
      [join(workspace, ".gitmodules"), "created"],
    ]);
    expect(changes[0]!.message).toContain("another repository's config");
  });

  it("names a repository planted in a subfolder once, and one in a workspace that had none", async () => {
    const before = await snapshotHostExecuted(workspace);
    await mkdir(join(workspace, "sub"));
    await git(join(workspace, "sub"), "init", "-q");
    await git(join(workspace, "sub"), "config", "core.fsmonitor", "touch /tmp/x");
    await git(workspace, "init", "-q");
    const changes = hostExecutedChanges(workspace, before, await snapshotHostExecuted(workspace));
    expect(changes.map((c) => c.path)).toEqual([join(workspace, ".git"), join(workspace, "sub", ".git")]);
    expect(changes[1]!.message).toContain(`a git repository appeared at ${join(workspace, "sub")}`);
  });

  it("names edits to IDE and Claude Code settings for review", async () => {
    const before = await snapshotHostExecuted(workspace);
    await mkdir(join(workspace, ".vscode"));
    await writeFile(join(workspace, ".vscode", "tasks.json"), "{}");
    const changes = hostExecutedChanges(workspace, before, await snapshotHostExecuted(workspace));
    expect(changes.map((c) => c.path)).toEqual([join(workspace, ".vscode", "tasks.json")]);
    expect(changes[0]!.message).toContain("review it");
  });
});

describe("linkedWorktreeOf", () => {
  const makeMain = async () => {
    const main = join(root, "main");
    await mkdir(main);
    await git(main, "init", "-q");
    await git(main, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "a");
    return main;
  };

  it("finds the common dir of a worktree made by git worktree add, and nothing for a plain repository", async () => {
    const main = await makeMain();
    await rm(workspace, { recursive: true });
    await git(main, "worktree", "add", "-q", workspace);
    expect(await linkedWorktreeOf(workspace)).toEqual({ kind: "linked", commonDir: join(main, ".git") });
    expect(await linkedWorktreeOf(main)).toBeUndefined();
    expect(await linkedWorktreeOf(root)).toBeUndefined();
  });

  it("refuses a .git file that a bottle could have planted to get another host folder mounted", async () => {
    const main = await makeMain();
    const other = join(root, "other");
    await git(main, "worktree", "add", "-q", other);
    const outside = join(root, "secrets");
    await mkdir(join(outside, "objects"), { recursive: true });
    await mkdir(join(outside, "refs"));
    await writeFile(join(outside, "HEAD"), "ref: refs/heads/main\n");
    const reasonOf = async (dotGit: string) => {
      await writeFile(join(workspace, ".git"), dotGit);
      const found = await linkedWorktreeOf(workspace);
      expect(found?.kind).toBe("unrecognised");
      return found?.kind === "unrecognised" ? found.reason : "";
    };

    // Straight at a folder, or at a git dir that is no worktree's.
    expect(await reasonOf(`gitdir: ${outside}\n`)).toContain("(no commondir)");
    expect(await reasonOf(`gitdir: ${join(main, ".git")}\n`)).toContain("(no commondir)");
    // Another worktree's real admin dir: its gitdir file points at that worktree, not here.
    expect(await reasonOf(`gitdir: ${join(main, ".git", "worktrees", "other")}\n`)).toContain(
      "whose gitdir file does not point back at it",
    );
    // A fake admin dir inside the workspace whose commondir names the folder to be mounted.
    const fake = join(workspace, "fake");
    await mkdir(fake);
    await writeFile(join(fake, "commondir"), `${outside}\n`);
    await writeFile(join(fake, "gitdir"), `${join(workspace, ".git")}\n`);
    expect(await reasonOf("gitdir: fake\n")).toContain("not in the worktrees/ folder");
    // The same laid out as git would, but inside the workspace: it leads to no repository.
    await mkdir(join(workspace, "c", "worktrees", "w"), { recursive: true });
    await writeFile(join(workspace, "c", "worktrees", "w", "commondir"), "../..\n");
    await writeFile(join(workspace, "c", "worktrees", "w", "gitdir"), `${join(workspace, ".git")}\n`);
    expect(await reasonOf("gitdir: c/worktrees/w\n")).toContain("which is not a git repository");
    expect(await reasonOf("nothing here\n")).toContain("has no gitdir: line");
    expect(await reasonOf(`gitdir: ${join(root, "missing")}\n`)).toContain("which does not exist");
  });
});
