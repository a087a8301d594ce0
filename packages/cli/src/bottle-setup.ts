/**
 * From settings to what a backend needs: its shared options, the image reference, and the
 * RunSpec of one bottled session (workspace, state folder, identity, env, secrets, limits, policy).
 */
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import {
  chown,
  copyFile,
  type FileHandle,
  lchown,
  lstat,
  mkdir,
  open,
  rename,
  rm,
  stat,
} from "node:fs/promises";
import { homedir } from "node:os";
import { basename, dirname, join } from "node:path";
import type { AgentImageSource } from "@claude-bottle/core";
import {
  BottleError,
  bottleLabels,
  defaults,
  dnsLabel,
  parsePublishEntry,
  type RunSpec,
  runSpecSchema,
  type SharedBackendOptions,
} from "@claude-bottle/core";
import { placeholderApprovalSuffix } from "@claude-bottle/gateway/services";
import { readOnlyPathsFor, type WorkspaceGit, workspaceGitOf } from "./git-protection.js";
import { isInside } from "./path-inside.js";
import { parseOnce, type Settings } from "./settings.js";

export function imageRefOf(settings: Settings): string {
  const image = settings.config.image;
  return image?.use ?? image?.ref ?? defaults.imageRef;
}

export function sharedOptionsOf(settings: Settings): SharedBackendOptions {
  const { config } = settings;
  const image = config.image ?? {};
  let source: AgentImageSource;
  if (image.use) source = { kind: "existing" };
  else if (image.dockerfile) {
    source = {
      kind: "dockerfile",
      dockerfile: image.dockerfile,
      context: image.context ?? dirname(image.dockerfile),
      ...(config.claudeCode && { claudeCodeVersion: config.claudeCode.version }),
    };
  } else {
    source = {
      kind: "bundled",
      ...(image.base && { base: image.base }),
      ...(config.claudeCode && { claudeCodeVersion: config.claudeCode.version }),
      ...(config.tls && { extraCaCerts: config.tls.extraCaCerts }),
    };
  }
  return {
    image: source,
    cacheDir: config.cacheDir,
    dataDir: config.dataDir,
    helperImage: {
      ...(image.base && { base: image.base }),
      ...(config.tls?.extraCaCerts && { extraCaCerts: config.tls.extraCaCerts }),
    },
  };
}

/** A name-safe form of the project folder's name: `My Project!` → `my-project`. */
export function projectSlug(workspace: string): string {
  const slug = basename(workspace)
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, "-")
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "")
    .slice(0, 40);
  return slug || "project";
}

/** The project's folder in claude-bottle's data dir: its agent home and its logs. */
export function projectDataDir(dataDir: string, workspace: string): string {
  const hash = createHash("sha256").update(workspace).digest("hex").slice(0, 8);
  return join(dataDir, "projects", `${projectSlug(workspace)}-${hash}`);
}

/** The project's own Claude Code home on the host: login, settings, CLAUDE.md, sessions. */
export function projectHome(dataDir: string, workspace: string): string {
  return join(projectDataDir(dataDir, workspace), "home");
}

/** What every bottle's name starts with; `ps`, `stop` and the labels tell claude-bottle's own from others. */
export const bottleNamePrefix = "claude-bottle-";

/**
 * A bottle's name: `claude-bottle-<project>-<NAME>`, where NAME is what the user gave with
 * `--name` (a DNS label: lower-case letters, digits and inner hyphens, at most 63) or else six
 * random hex digits. The prefix keeps the names clear of containers claude-bottle did not make,
 * and the project's slug keeps one project's `a` apart from another's; two projects whose slugs
 * and names still add up to the same name (`my` + `app-a`, `my-app` + `a`) meet the in-use check
 * before either starts, never each other's bottle.
 */
export function bottleNameFor(workspace: string, given?: string): string {
  if (given === undefined)
    return `${bottleNamePrefix}${projectSlug(workspace)}-${randomBytes(3).toString("hex")}`;
  if (!dnsLabel.test(given)) {
    throw new BottleError(
      "USAGE",
      `--name ${JSON.stringify(given)} is not a valid bottle name: use 1 to 63 lower-case letters, digits and hyphens, not starting or ending with a hyphen (e.g. --name fix-tests)`,
    );
  }
  return `${bottleNamePrefix}${projectSlug(workspace)}-${given}`;
}

/** Host credentials that reach the agent only at run time, never printed. */
export const secretNames = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"] as const;

/** Host variables that tune Claude Code and are passed into the bottle as they are. */
const passedThrough =
  /^(CLAUDE_CODE_|ANTHROPIC_(MODEL|SMALL_FAST_MODEL|DEFAULT_\w+_MODEL)$|DISABLE_|MAX_THINKING_TOKENS$|BASH_(DEFAULT|MAX)_TIMEOUT_MS$)/;

export interface RunSpecInput {
  settings: Settings;
  workspace: string;
  command: string[];
  env: NodeJS.ProcessEnv;
  terminal: { stdin: boolean; stdout: boolean };
  identity: { uid: number; gid: number } | undefined;
  /** The name given with `--name` (see bottleNameFor); a generated one otherwise. */
  name?: string;
  /** When the run starts, for the log of a named bottle, whose name the next run may reuse. */
  now?: Date;
  /** The workspace's git as the caller already asked it (workspaceGitOf); asked here otherwise. */
  git?: WorkspaceGit;
}

export async function buildRunSpec(input: RunSpecInput): Promise<RunSpec> {
  const { settings, workspace, env } = input;
  const config = settings.config;
  // Before anything touches the disk: a bad name is the user's typo.
  const name = bottleNameFor(workspace, input.name);
  const workspaceStat = await stat(workspace).catch(() => undefined);
  if (!workspaceStat?.isDirectory()) {
    throw new BottleError("USAGE", `the workspace ${workspace} is not a folder`, {
      hint: "pass --workspace DIR or cd into your project",
    });
  }
  const home = projectHome(config.dataDir, workspace);
  // A linked worktree's git lives in its main repository's common dir: mounted at its own path.
  const git = input.git ?? (await workspaceGitOf(workspace));
  const { gitDirs } = git;
  refuseMountingConfigDir(settings.configDir, [workspace, ...gitDirs], config.dataDir);

  const bottleEnv: Record<string, string> = {};
  const secrets: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    if ((secretNames as readonly string[]).includes(name)) secrets[name] = value;
    else if (passedThrough.test(name)) bottleEnv[name] = value;
  }
  const tty = input.terminal.stdin && input.terminal.stdout;
  if (tty) bottleEnv.TERM = env.TERM ?? "xterm-256color";
  if (env.COLORTERM && tty) bottleEnv.COLORTERM = env.COLORTERM;

  const slug = projectSlug(workspace);
  // A generated name is new each run; a given one comes back, and each run keeps its own log.
  const logName =
    input.name === undefined
      ? name
      : `${name}-${(input.now ?? new Date()).toISOString().replace(/[-:]/g, "").replace(".", "-")}`;
  const parsed = runSpecSchema.safeParse(
    {
      workspace,
      command: input.command,
      env: bottleEnv,
      secrets,
      ...(config.anthropic?.baseUrl && { anthropicBaseUrl: config.anthropic.baseUrl }),
      tty,
      // Forward stdin only when it is a pipe or file: a terminal stdin without a TTY would hold `-p` open.
      stdin: tty || !input.terminal.stdin,
      home,
      ...(input.identity && { user: input.identity }),
      mounts: gitDirs.map((gitDir) => ({ source: gitDir, target: gitDir, readOnly: false })),
      readOnlyPaths: await readOnlyPathsFor(workspace, gitProtectionOf(settings), git),
      resources: config.resources ?? {},
      network: {
        mode: config.network?.mode ?? "allowlist",
        allow: config.network?.allow ?? [],
        presets: config.network?.presets ?? [],
        hostPorts: config.network?.hostPorts ?? [],
        publish: (config.network?.publish ?? []).flatMap((entry) => parsePublishEntry(entry) ?? []),
      },
      passthroughCredentials: config.credentials?.passthrough ?? false,
      deniedLogPath: join(projectDataDir(config.dataDir, workspace), "logs", `${logName}.denied.jsonl`),
      name,
      labels: { [bottleLabels.workspace]: workspace, [bottleLabels.project]: slug },
    },
    parseOnce,
  );
  if (!parsed.success) {
    throw new BottleError(
      "USAGE",
      parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
    );
  }
  return parsed.data;
}

/** Whether git's executable files stay read-only in the bottle (git.protect, default true). */
export function gitProtectionOf(settings: Settings): boolean {
  return settings.config.git?.protect !== false;
}

/**
 * The bottle mounts the workspace and its agent home read-write. If either holds claude-bottle's
 * config folder (bottling your home folder, say), the agent could rewrite the user config and the
 * trust store, and with them what the next run trusts: refuse.
 */
function refuseMountingConfigDir(configDir: string, mountedFolders: string[], dataDir: string): void {
  // Every project's agent home under the data dir is mounted into that project's bottles.
  const homes = join(dataDir, "projects");
  for (const mounted of [...mountedFolders, homes]) {
    if (!isInside(configDir, mounted)) continue;
    throw new BottleError(
      "INVALID_CONFIG",
      mounted !== homes
        ? `${mounted}: holds claude-bottle's config folder ${configDir}, which the bottle could then rewrite; run claude-bottle in a project folder (or set CLAUDE_BOTTLE_CONFIG_DIR elsewhere)`
        : `claude-bottle's config folder ${configDir} is inside ${homes}, where bottles keep their homes and could rewrite it; set CLAUDE_BOTTLE_CONFIG_DIR or dataDir so that they do not overlap`,
    );
  }
}

/**
 * Who the agent runs as: the owner of the files it will write. A regular user: that user, so files
 * it creates are theirs. Root: the workspace's owner when that is a regular user (`sudo
 * claude-bottle` in someone's project). Root on a folder root owns (a CI job, a dev container):
 * root, because no other uid can write there; backends run uid 0 with every capability dropped
 * and no-new-privileges (see RunSpec.user), so what it can do beyond an unprivileged user is write
 * files root owns in its mounts, which is the point. The alternatives don't hold up: a user
 * namespace (root inside, an unprivileged id outside) could not write root's folder either, and
 * Docker offers one only daemon-wide (`userns-remap`), not per container; chowning the user's
 * folder behind their back is worse.
 */
export async function agentIdentity(
  workspace: string,
  host: { uid: number; gid: number } | undefined,
  statOf: (path: string) => Promise<{ uid: number; gid: number }> = stat,
): Promise<{ uid: number; gid: number } | undefined> {
  if (host === undefined || host.uid !== 0) return host;
  const owner = await statOf(workspace);
  return { uid: owner.uid, gid: owner.gid };
}

/** Create the project's bottle home on first use, owned by the agent's identity. */
export async function ensureProjectHome(
  home: string,
  identity?: { uid: number; gid: number },
): Promise<void> {
  await mkdir(home, { recursive: true });
  await mkdir(join(dirname(home), "logs"), { recursive: true });
  const claudeDir = await realFolderIn(home, ".claude");
  if (identity && process.getuid?.() === 0) {
    // The project folder and the home are outside the bottle's reach; `.claude` is checked above,
    // and lchown never follows a link the bottle may plant between the check and here.
    for (const path of [dirname(home), home]) await chown(path, identity.uid, identity.gid);
    await lchown(claudeDir, identity.uid, identity.gid);
  }
}

/**
 * `home/name` as a real folder, made when missing. The bottle owns its home and can put a link
 * there instead (say `.claude` -> `/etc`); the host, perhaps as root, must never write through it.
 */
async function realFolderIn(home: string, name: string): Promise<string> {
  const dir = join(home, name);
  await mkdir(dir, { recursive: true });
  if (!(await lstat(dir)).isDirectory()) {
    throw new BottleError(
      "RUN_FAILED",
      `${dir} is not a folder but a link or file left there from inside the bottle; claude-bottle does not write through it`,
      { hint: `look at it, remove it (rm ${dir}) and run again` },
    );
  }
  return dir;
}

/** The most of the bottle's `.claude.json` the host reads; a bigger file is left alone. */
const maxClaudeStateBytes = 16 * 1024 * 1024;

/**
 * Claude Code's own state in the bottle home (`.claude.json`), seeded before every run so an
 * interactive run starts at the prompt: onboarding counts as done (its connectivity check would go
 * to api.anthropic.com, which the bottle reaches only through the API forwarder), the workspace the
 * user chose to bottle is trusted, and claude-bottle's placeholder API key is approved. Claude Code
 * remembers an approved key by its last 20 characters; every run's placeholder is new but ends in
 * the same 20 (`placeholderApprovalSuffix`), so one entry approves them all and the list does not
 * grow. Keys already present are left alone, and a user's rejection is respected.
 *
 * The file lives in a folder the bottle writes, so it is read as hostile data: never through a
 * symbolic link (O_NOFOLLOW), only when it is a regular file of bounded size, parsed in a `try`
 * with `__proto__` keys dropped, and changed only when it has the expected shape. It is replaced
 * atomically: written to a new file of its own (O_EXCL, never a planted one) and renamed over the
 * old name, which replaces a planted link rather than writing through it. Returns whether the file
 * holds the seeded state now.
 */
export async function seedClaudeState(
  home: string,
  workspace: string,
  identity?: { uid: number; gid: number },
): Promise<boolean> {
  const path = join(home, ".claude.json");
  const existing = await readBottleJson(path, maxClaudeStateBytes);
  if (existing === "unusable") return false;
  const state = existing ?? {};
  if (!isPlainObject(state)) return false;
  const projects = state.projects ?? {};
  const responses = state.customApiKeyResponses ?? {};
  if (!isPlainObject(projects) || !isPlainObject(responses)) return false;
  const approved = responses.approved ?? [];
  const rejected = responses.rejected ?? [];
  if (!isStringArray(approved) || !isStringArray(rejected)) return false;
  const project = projects[workspace] ?? {};
  if (!isPlainObject(project)) return false;

  state.hasCompletedOnboarding ??= true;
  projects[workspace] = { hasTrustDialogAccepted: true, ...project };
  state.projects = projects;
  if (!approved.includes(placeholderApprovalSuffix) && !rejected.includes(placeholderApprovalSuffix))
    approved.push(placeholderApprovalSuffix);
  state.customApiKeyResponses = { ...responses, approved, rejected };
  await replaceFile(path, `${JSON.stringify(state, null, 2)}\n`, identity);
  return true;
}

/**
 * A JSON file from a folder the bottle controls: undefined when there is none, "unusable" when it
 * is a link, not a regular file, too big, or not JSON (mid-edit, or planted: left to Claude Code).
 */
async function readBottleJson(path: string, maxBytes: number): Promise<unknown> {
  let handle: FileHandle;
  try {
    // O_NONBLOCK: a FIFO planted under this name must not hang the CLI.
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT" ? undefined : "unusable";
  }
  try {
    const info = await handle.stat();
    if (!info.isFile() || info.size > maxBytes) return "unusable";
    const buffer = Buffer.alloc(info.size);
    const { bytesRead } = await handle.read(buffer, 0, info.size, 0);
    return JSON.parse(buffer.subarray(0, bytesRead).toString("utf8"), (key, value) =>
      key === "__proto__" ? undefined : value,
    );
  } catch {
    return "unusable";
  } finally {
    await handle.close();
  }
}

/** Replace `path` with `text` (mode 0600, owned by `identity` when run as root), never writing through a link. */
async function replaceFile(
  path: string,
  text: string,
  identity?: { uid: number; gid: number },
): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.claude-bottle-${randomBytes(6).toString("hex")}`);
  const handle = await open(
    temporary,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    await handle.writeFile(text);
    // It may hold account details: private, whatever mode the old file had.
    await handle.chmod(0o600);
    if (identity && process.getuid?.() === 0) await handle.chown(identity.uid, identity.gid);
    await handle.close();
    await rename(temporary, path);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(temporary, { force: true });
    throw error;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((entry) => typeof entry === "string");
}

/** Copy the host's ~/.claude/CLAUDE.md and settings.json into the project's bottle home. */
export async function importHostClaudeConfig(
  home: string,
  identity?: { uid: number; gid: number },
  hostHome = homedir(),
): Promise<string[]> {
  const copied: string[] = [];
  for (const name of ["CLAUDE.md", "settings.json"]) {
    const from = join(hostHome, ".claude", name);
    if (!(await stat(from).catch(() => undefined))?.isFile()) continue;
    const dir = await realFolderIn(home, ".claude");
    // Copied to a new name of its own (never onto a planted link), then renamed over the old name,
    // which replaces a link there instead of writing through it.
    const staged = join(dir, `.${name}.claude-bottle-${randomBytes(6).toString("hex")}`);
    await copyFile(from, staged, constants.COPYFILE_EXCL);
    if (identity && process.getuid?.() === 0) await lchown(staged, identity.uid, identity.gid);
    await rename(staged, join(dir, name));
    copied.push(name);
  }
  return copied;
}

/** The RunSpec as `--dry-run` shows it: secrets by name only. */
export function redactedSpec(spec: RunSpec): unknown {
  return {
    ...spec,
    secrets: Object.fromEntries(Object.keys(spec.secrets).map((name) => [name, "<redacted>"])),
  };
}
