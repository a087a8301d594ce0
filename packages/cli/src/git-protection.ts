/**
 * The run's side of git-guard (core): which workspace paths go read-only into the RunSpec, what to
 * say before the run when they can't be (an opt-out, a backend without read-only paths), and the
 * report after it of whatever changed anyway.
 */
import {
  gitProtectedPaths,
  hostExecutedChanges,
  hostHooksPath,
  linkedWorktreeOf,
  snapshotHostExecuted,
} from "@claude-bottle/core/git-guard";

const protectedNames = ".git/config, .git/hooks and .gitmodules";

/**
 * What a run needs to know of the workspace's git, asked of git once per run: the git dirs outside
 * the workspace the bottle needs for git to work in it (a linked worktree's common dir), mounted
 * read-write at their own paths and protected like `.git`; a warning when the workspace's `.git`
 * file is not followed (see `linkedWorktreeOf`); and where git on the host finds the hooks
 * (`hostHooksPath`), still being asked while the run goes on (git config is read-only in the
 * bottle, so the answer holds).
 */
export interface WorkspaceGit {
  gitDirs: string[];
  warnings: string[];
  hooksPath: Promise<string | undefined>;
}

export async function workspaceGitOf(workspace: string): Promise<WorkspaceGit> {
  const hooksPath = hostHooksPath(workspace);
  hooksPath.catch(() => {});
  const worktree = await linkedWorktreeOf(workspace);
  if (worktree?.kind === "linked") return { gitDirs: [worktree.commonDir], warnings: [], hooksPath };
  return { gitDirs: [], warnings: worktree ? [worktree.reason] : [], hooksPath };
}

/** `RunSpec.readOnlyPaths` for a workspace: git's executable files, unless git.protect is off. */
export async function readOnlyPathsFor(
  workspace: string,
  protect: boolean,
  git: WorkspaceGit,
): Promise<string[]> {
  if (!protect) return [];
  return gitProtectedPaths(workspace, { hooksPath: await git.hooksPath, mountedGitDirs: git.gitDirs });
}

/**
 * What the user must know before the run when git.protect is off. (A backend that cannot keep the
 * protected paths read-only is core's capabilityGaps' to report.)
 */
export function gitProtectionWarnings(
  protect: boolean,
  /** Where git.protect was set (`claude-bottle config` shows the same). */
  source?: string,
): string[] {
  if (protect) return [];
  return [
    `git.protect is false${source ? ` (${source})` : ""}: the bottle can change ${protectedNames}, and git on this machine runs what it puts there; claude-bottle names every change after the run`,
  ];
}

/**
 * Fingerprint the workspace's host-executed files now; the function returned names, one line
 * each, what changed since. Call it right before the bottle starts and after it ends.
 * `hooksPath` is where git on the host finds the hooks (`hostHooksPath`), when the caller already
 * asked git for it: a run asks while the image builds, so that the `git` call is not between the
 * build and the bottle's start.
 */
export async function watchHostExecuted(
  workspace: string,
  mountedGitDirs: readonly string[] = [],
  hooksPath: Promise<string | undefined> = hostHooksPath(workspace),
): Promise<() => Promise<string[]>> {
  const options = { hooksPath: await hooksPath, mountedGitDirs };
  const before = await snapshotHostExecuted(workspace, options);
  return async () => {
    const after = await snapshotHostExecuted(workspace, options);
    return hostExecutedChanges(workspace, before, after).map((change) => change.message);
  };
}
