/**
 * Files in the workspace that make the host run something. The workspace is mounted read-write,
 * so without care a bottle could set `core.fsmonitor` in `.git/config` or drop a hook into
 * `.git/hooks`, and the user's next `git status` on the host (or their editor's, which runs git all
 * the time) would execute it. Two layers keep that from happening:
 *
 * 1. `gitProtectedPaths` lists what exists of those files now; the CLI puts the list in
 *    `RunSpec.readOnlyPaths` and a backend that can (Docker) makes each read-only in the bottle.
 * 2. `snapshotHostExecuted` fingerprints them, and the places they could appear, before the run;
 *    `hostExecutedChanges` compares after it and names each change, whatever the backend. This is
 *    the backstop for what a mount cannot cover, and the only protection where sub-mounts are not
 *    possible (smolmachines).
 *
 * Paths that do not exist are never mounted over. A bind needs a source: Docker refuses a missing
 * one (`--mount`) or creates it as root in the user's tree (`-v`), and an empty stand-in at
 * `.git/hooks` or `.git` would break `git init` and every hook the user adds later; one at
 * `.git/commondir` would break git outright (it dies on an empty or unreadable one). So a
 * repository without `.git/hooks`, a workspace without `.git` (the bottle can `git init` one), a
 * new `.git/commondir` (git then reads the config of whatever repository it names) and a new
 * repository in a subfolder (`sub/.git`) can still be created, and only the report after the run
 * names them. Repositories that already exist in the project get the same protection as `.git`.
 *
 * What Anthropic's sandbox-runtime also refuses to let a sandbox write, and why it does not apply
 * here the same way: shell startup files (`.bashrc`, `.zshrc`, `.profile`...) and `.gitconfig` are
 * read from the user's home, which a bottle never mounts; copies inside a project are inert. IDE
 * and tool configs in the project (`.vscode/tasks.json`, `.vscode/settings.json`, `.mcp.json`,
 * `.claude/settings.json`) can run commands on the host, but only through a tool the user opens
 * (with its own workspace trust), and they are ordinary project files the agent may be asked to
 * edit: they stay writable, and the report names every change to them so the user reviews it.
 * `.idea/` is left out: IDEs rewrite it constantly, and a report that always speaks is ignored.
 */
import { createHash } from "node:crypto";
import { lstat, readdir, readFile, readlink, realpath, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { execa } from "execa";

/** Files in a git dir that decide what git executes or which config it reads. */
const gitDirFiles = ["config", "config.worktree", "commondir"] as const;
/** Folders in a git dir whose files git executes. */
const gitDirFolders = ["hooks"] as const;
/**
 * Files of each linked worktree's admin dir (`worktrees/NAME/`) in a git dir. `commondir` and
 * `config.worktree` decide which config git reads in that worktree. `gitdir` says where the
 * worktree lives: `git worktree list`, `move`, `remove` and `repair` on the host take it as the
 * worktree's folder, so a bottle must not point it at another one.
 */
const worktreeAdminFiles = ["commondir", "config.worktree", "gitdir"] as const;

/** Project files host tools may run commands from; watched and reported, not made read-only. */
export const reviewedFiles = [
  ".vscode/tasks.json",
  ".vscode/settings.json",
  ".mcp.json",
  ".claude/settings.json",
  ".claude/settings.local.json",
] as const;

/** How deep below the workspace a planted repository (`a/b/.git`) is still found. */
export const nestedRepositoryDepth = 3;
/** Folders never searched for nested repositories: large, and not where people run git. */
const skippedFolders = new Set(["node_modules", ".git"]);
/** Submodules nest (`.git/modules/a/modules/b`); how many levels are followed. */
const submoduleDepth = 3;

export interface GitGuardOptions {
  /**
   * The repository's `core.hooksPath` as git on the host resolves it (husky sets `.husky`), when
   * it points inside the workspace; its hooks are protected like `.git/hooks`.
   */
  hooksPath?: string | undefined;
  /**
   * Git dirs outside the workspace that the bottle also gets, read-write, at the same path (a
   * linked worktree's common dir): their config and hooks are protected and watched like `.git`'s.
   */
  mountedGitDirs?: readonly string[] | undefined;
}

/**
 * The hooks folder git on the host uses for the workspace, `core.hooksPath` included (husky sets
 * `.husky`), or undefined without git or a repository. `git rev-parse --git-path` only reads
 * config; it runs no hook and no fsmonitor.
 */
export async function hostHooksPath(workspace: string, gitBin = "git"): Promise<string | undefined> {
  const found = await execa(gitBin, ["rev-parse", "--git-path", "hooks"], {
    cwd: workspace,
    reject: false,
    stdin: "ignore",
    timeout: 10_000,
  }).catch(() => undefined);
  if (found?.exitCode !== 0 || !found.stdout.trim()) return undefined;
  return resolve(workspace, found.stdout.trim());
}

/**
 * What, inside the workspace, must be read-only in the bottle: the git dir's `config`,
 * `config.worktree`, `commondir` and `hooks/`, the same for every submodule's git dir under
 * `.git/modules`, a linked worktree's `.git` file (so it can't be pointed elsewhere) and its git
 * dir when that lies inside the workspace, `.gitmodules`, and `core.hooksPath` when it points
 * inside. The same holds for every repository already in the project up to
 * `nestedRepositoryDepth` folders down: a submodule's `.git` file is a plain file in the work tree,
 * and the superproject's `git status` runs git in it. Only existing paths are listed (see the
 * module comment); symlinks are replaced by what they point to, and dropped when that is outside
 * the workspace.
 */
export async function gitProtectedPaths(workspace: string, options: GitGuardOptions = {}): Promise<string[]> {
  const candidates: string[] = [join(workspace, ".gitmodules")];
  for (const dotGit of await repositoriesBelow(workspace)) {
    const info = await lstat(dotGit).catch(() => undefined);
    if (info?.isDirectory()) candidates.push(...(await gitDirProtectedPaths(dotGit)));
    else if (info?.isFile()) {
      candidates.push(dotGit);
      const gitDir = await gitDirOfFile(dotGit);
      if (gitDir) candidates.push(...(await gitDirProtectedPaths(gitDir)));
    }
    if (dotGit !== join(workspace, ".git")) candidates.push(join(dirname(dotGit), ".gitmodules"));
  }
  if (options.hooksPath) candidates.push(resolve(workspace, options.hooksPath));
  const paths = await insideOnly(workspace, candidates);
  for (const gitDir of options.mountedGitDirs ?? [])
    paths.push(...(await insideOnly(gitDir, await gitDirProtectedPaths(gitDir), true)));
  return [...new Set(paths)].sort();
}

/**
 * The paths of one git dir that decide what git runs: `config`, `config.worktree`, `commondir`,
 * `hooks/`, for the common dir it names (a linked worktree's) and for each submodule's git dir
 * under `modules/`; and each linked worktree's `commondir`, `config.worktree` and `gitdir` under
 * `worktrees/` (see `worktreeAdminFiles`). Existing paths only. Exported for the callers that
 * mount a git dir of their own (a linked worktree's common dir), so it gets the same protection
 * as `.git`.
 */
export async function gitDirProtectedPaths(gitDir: string, depth = submoduleDepth): Promise<string[]> {
  const found: string[] = [];
  for (const name of [...gitDirFiles, ...gitDirFolders]) {
    if (await exists(join(gitDir, name))) found.push(join(gitDir, name));
  }
  const common = await readFile(join(gitDir, "commondir"), "utf8").catch(() => undefined);
  if (common?.trim() && depth > 0) {
    const commonDir = resolve(gitDir, common.trim());
    if (commonDir !== gitDir) found.push(...(await gitDirProtectedPaths(commonDir, 0)));
  }
  if (depth > 0) {
    for (const module of await subfolders(join(gitDir, "modules"))) {
      found.push(...(await gitDirProtectedPaths(module, depth - 1)));
    }
  }
  for (const worktree of await subfolders(join(gitDir, "worktrees"))) {
    for (const name of worktreeAdminFiles) {
      if (await exists(join(worktree, name))) found.push(join(worktree, name));
    }
  }
  return found;
}

/** What a workspace whose `.git` is a file (a linked worktree) needs mounted for git to work in it. */
export type LinkedWorktree =
  /** A worktree of the repository whose common git dir is `commonDir` (outside the workspace). */
  | { kind: "linked"; commonDir: string }
  /** `.git` is a file, but not one claude-bottle will follow; `reason` says why, for a warning. */
  | { kind: "unrecognised"; reason: string };

/**
 * The common git dir of a workspace that is a linked worktree (`git worktree add`), or undefined
 * when its `.git` is a folder or absent. Git in such a worktree needs the common dir (objects,
 * refs, config) as well as the worktree's own admin dir inside it, so the caller mounts the common
 * dir read-write at its own path and protects it with `mountedGitDirs`.
 *
 * The `.git` file is in the workspace, which the bottle writes (it is read-only during a protected
 * run, but not with git.protect off, nor on every backend): what it names decides which host
 * folder the next run mounts read-write. So it is followed the way git's own `git worktree add`
 * lays it out, and nowhere else: `.git` names `COMMON/worktrees/NAME`, whose `commondir` leads to
 * COMMON, whose `gitdir` file points back at this workspace's `.git`, and COMMON looks like a git
 * dir (HEAD, objects/, refs/). A bottle can write none of those outside the workspace, so a planted
 * `.git` file can at most name another real worktree's admin dir, whose `gitdir` does not point
 * here. This reads the files git reads for `git rev-parse --git-common-dir`, rather than running
 * git: no dependence on git being installed, and no `safe.directory` refusal when root runs it in
 * someone else's worktree.
 *
 * What stays writable in the common dir, and why that is accepted: refs, objects, logs, the index
 * and `HEAD` of the main worktree and the others (committing needs objects and refs, and a branch
 * checked out elsewhere is one ref among them); `info/` (`exclude`, `attributes`,
 * `sparse-checkout`), `packed-refs`, `objects/info/alternates` and `shallow` decide what git shows,
 * never what it runs — a filter or diff driver an attribute names runs only if config defines it,
 * and the config is read-only.
 */
export async function linkedWorktreeOf(workspace: string): Promise<LinkedWorktree | undefined> {
  const dotGit = join(workspace, ".git");
  const info = await lstat(dotGit).catch(() => undefined);
  if (!info || info.isDirectory()) return undefined;
  const refuse = (why: string): LinkedWorktree => ({
    kind: "unrecognised",
    reason: `${dotGit} ${why}, so git will not work in the bottle; run git worktree repair on the host if this is a worktree`,
  });
  if (!info.isFile()) return refuse("is neither a folder nor a file");
  const named = await gitDirOfFile(dotGit);
  if (!named) return refuse("has no gitdir: line");
  const adminDir = await realpath(named).catch(() => undefined);
  if (!adminDir) return refuse(`names ${named}, which does not exist`);
  const common = await readFile(join(adminDir, "commondir"), "utf8").catch(() => undefined);
  if (!common?.trim())
    return refuse(`names ${adminDir}, which is not a linked worktree's git dir (no commondir)`);
  const commonDir = await realpath(resolve(adminDir, common.trim())).catch(() => undefined);
  if (!commonDir || adminDir !== join(commonDir, "worktrees", basename(adminDir)))
    return refuse(
      `names ${adminDir}, which is not in the worktrees/ folder of the repository its commondir names`,
    );
  const back = await readFile(join(adminDir, "gitdir"), "utf8").catch(() => "");
  const backReal = back.trim()
    ? await realpath(resolve(adminDir, back.trim())).catch(() => undefined)
    : undefined;
  if (backReal === undefined || backReal !== (await realpath(dotGit).catch(() => dotGit)))
    return refuse(`names ${adminDir}, whose gitdir file does not point back at it`);
  for (const [name, folder] of [
    ["HEAD", false],
    ["objects", true],
    ["refs", true],
  ] as const) {
    const entry = await stat(join(commonDir, name)).catch(() => undefined);
    if (!entry || entry.isDirectory() !== folder)
      return refuse(`leads to ${commonDir}, which is not a git repository`);
  }
  if (isInside(await realpath(workspace).catch(() => workspace), commonDir, true)) return undefined;
  return { kind: "linked", commonDir };
}

/** A fingerprint per watched path (absolute); a path that does not exist has none. */
export type HostExecutedSnapshot = ReadonlyMap<string, string>;

export interface HostExecutedChange {
  /** Absolute path of what changed. */
  path: string;
  change: "created" | "changed" | "removed";
  /** One line for the user: what changed, why it matters and what to do. */
  message: string;
}

/**
 * Fingerprint every file that could make the host run something: the protected paths (see
 * `gitProtectedPaths`), the places they could appear that don't exist yet (`.git`, `.git/hooks/*`,
 * `.git/commondir`, `.gitmodules`), the files of `reviewedFiles`, and every `.git` entry up to
 * `nestedRepositoryDepth` folders down (a planted repository runs its own config and hooks when
 * the user runs git there).
 */
export async function snapshotHostExecuted(
  workspace: string,
  options: GitGuardOptions = {},
): Promise<HostExecutedSnapshot> {
  const snapshot = new Map<string, string>();
  const roots = [workspace, ...(options.mountedGitDirs ?? [])];
  const add = async (path: string) => {
    if (snapshot.has(path) || !roots.some((root) => isInside(root, path, true))) return;
    await fingerprintInto(snapshot, path);
  };
  for (const path of await gitProtectedPaths(workspace, options)) await add(path);
  for (const repo of await repositoriesBelow(workspace)) {
    await add(repo);
    const info = await lstat(repo).catch(() => undefined);
    const gitDir = info?.isDirectory() ? repo : undefined;
    if (!gitDir) continue;
    for (const name of [...gitDirFiles, ...gitDirFolders]) await add(join(gitDir, name));
  }
  for (const name of [".git", ".git/config", ".git/hooks", ".git/commondir", ".gitmodules", ...reviewedFiles])
    await add(join(workspace, name));
  if (options.hooksPath) await add(resolve(workspace, options.hooksPath));
  for (const gitDir of options.mountedGitDirs ?? []) {
    for (const name of [...gitDirFiles, ...gitDirFolders]) await add(join(gitDir, name));
  }
  return snapshot;
}

/** What differs between two snapshots of the same workspace, one entry per changed file. */
export function hostExecutedChanges(
  workspace: string,
  before: HostExecutedSnapshot,
  after: HostExecutedSnapshot,
): HostExecutedChange[] {
  const changes: HostExecutedChange[] = [];
  const keys = [...new Set([...before.keys(), ...after.keys()])].sort();
  for (const path of keys) {
    const was = before.get(path);
    const now = after.get(path);
    if (was === now) continue;
    // A folder's own entry changes with its content; its files are reported one by one instead.
    if (was?.startsWith("dir:") && now?.startsWith("dir:")) continue;
    const change = was === undefined ? "created" : now === undefined ? "removed" : "changed";
    changes.push({ path, change, message: adviceFor(workspace, path, change) });
  }
  // A new repository or hooks folder is named once, not once per file inside it.
  return changes.filter(
    (item) =>
      !changes.some(
        (outer) =>
          outer !== item &&
          outer.change === "created" &&
          before.get(outer.path) === undefined &&
          item.path.startsWith(`${outer.path}${sep}`),
      ),
  );
}

function adviceFor(workspace: string, path: string, change: HostExecutedChange["change"]): string {
  const rel = relative(workspace, path);
  const verb = change;
  const parts = path.split(sep);
  const name = parts.at(-1) ?? path;
  const repoRoot = (index: number) => parts.slice(0, index).join(sep) || sep;
  const gitIndex = parts.lastIndexOf(".git");
  if ((reviewedFiles as readonly string[]).includes(rel.split(sep).join("/"))) {
    return `${path} was ${verb} while the bottle ran; your editor or Claude Code on this machine can run commands from it: review it (git diff -- ${rel}) before you open the project outside the bottle`;
  }
  if (name === ".gitmodules") {
    return `${path} was ${verb} while the bottle ran; review it (git diff -- .gitmodules) before you run git submodule commands`;
  }
  if (name === ".git" && gitIndex === parts.length - 1) {
    if (change === "created") {
      return `a git repository appeared at ${repoRoot(gitIndex)} while the bottle ran: git there would run its config and hooks; inspect it (git -C ${repoRoot(gitIndex)} config --local --list, and ${join(path, "hooks")}) or delete ${path} before you run git in that folder`;
    }
    return `${path} was ${verb} while the bottle ran; check that git in ${repoRoot(gitIndex)} still uses your repository (cat ${path} if it is a file) before you run git there`;
  }
  if (name === "commondir") {
    return `${path} was ${verb} while the bottle ran; it makes git read another repository's config and hooks: delete it unless you made it, before you run git here`;
  }
  if (name === "config" || name === "config.worktree") {
    const repo = gitIndex >= 0 ? repoRoot(gitIndex) : dirname(path);
    return `${path} was ${verb} while the bottle ran; git on this machine runs commands set there (core.fsmonitor, core.hooksPath, core.sshCommand, aliases): inspect it with git -C ${repo} config --local --list before you run git here`;
  }
  return `${path} was ${verb} while the bottle ran; git on this machine runs hooks: inspect or delete it before you run git here`;
}

/** `.git` entries (folders or files) below the workspace, `nestedRepositoryDepth` levels deep at most. */
async function repositoriesBelow(workspace: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number) => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.name === ".git") found.push(path);
      else if (entry.isDirectory() && depth < nestedRepositoryDepth && !skippedFolders.has(entry.name))
        await walk(path, depth + 1);
    }
  };
  await walk(workspace, 0);
  return found;
}

/** Record `path` (and, for a folder, every file below it) in `snapshot`. */
async function fingerprintInto(snapshot: Map<string, string>, path: string): Promise<void> {
  const info = await lstat(path).catch(() => undefined);
  if (!info) return;
  if (info.isSymbolicLink()) snapshot.set(path, `link:${await readlink(path).catch(() => "?")}`);
  else if (info.isFile()) {
    const content = await readFile(path).catch(() => Buffer.alloc(0));
    const digest = createHash("sha256").update(content).digest("hex");
    // The executable bit decides whether git runs a hook, so it is part of the fingerprint.
    snapshot.set(path, `file:${info.mode & 0o111 ? "x" : "-"}:${digest}`);
  } else if (info.isDirectory()) {
    // A `.git` folder is a whole repository; its own entry says it exists, and the files that
    // matter in it are fingerprinted on their own.
    if (path.split(sep).at(-1) === ".git") {
      snapshot.set(path, "dir:");
      return;
    }
    const entries = (await readdir(path).catch(() => [] as string[])).sort();
    snapshot.set(path, `dir:${entries.join("/")}`);
    for (const entry of entries) await fingerprintInto(snapshot, join(path, entry));
  } else snapshot.set(path, `other:${info.mode}`);
}

/** The git dir a `.git` file (`gitdir: PATH`) names, resolved against the file's folder. */
async function gitDirOfFile(file: string): Promise<string | undefined> {
  const text = await readFile(file, "utf8").catch(() => "");
  const match = /^gitdir:\s*(.+?)\s*$/m.exec(text);
  return match ? resolve(dirname(file), match[1]!) : undefined;
}

/**
 * Existing candidates inside the workspace, symlinks resolved (a bind mount follows them anyway,
 * and one pointing outside would mount a host path the bottle otherwise never sees), no duplicates,
 * parents before children.
 */
async function insideOnly(workspace: string, candidates: string[], rootToo = false): Promise<string[]> {
  const root = await realpath(workspace).catch(() => workspace);
  const kept = new Set<string>();
  for (const candidate of candidates) {
    const real = await realpath(candidate).catch(() => undefined);
    if (!real || !isInside(root, real, rootToo)) continue;
    kept.add(join(workspace, relative(root, real)));
  }
  return [...kept].sort();
}

/** `path` is below `root` (or is `root`, with `rootToo`). */
function isInside(root: string, path: string, rootToo = false): boolean {
  const rel = relative(root, path);
  if (rel === "") return rootToo;
  return rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

async function subfolders(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isDirectory()).map((entry) => join(dir, entry.name));
}

async function exists(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined)) !== undefined;
}
