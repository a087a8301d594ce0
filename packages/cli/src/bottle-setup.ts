/**
 * From settings to what a backend needs: its shared options, the image reference, and the
 * RunSpec of one bottled session (workspace, state folder, identity, env, secrets, limits, policy).
 */
import { createHash, randomBytes } from "node:crypto";
import { chmod, chown, copyFile, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, dirname, join } from "node:path";
import {
  type AgentImageSource,
  BottleError,
  bottleLabels,
  credentialPlaceholders,
  defaults,
  type RunSpec,
  runSpecSchema,
  type SharedBackendOptions,
} from "@claude-bottle/core";
import type { Settings } from "./settings.js";

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
    registryImage: config.registry?.image ?? defaults.registryImage,
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
}

export async function buildRunSpec(input: RunSpecInput): Promise<RunSpec> {
  const { settings, workspace, env } = input;
  const config = settings.config;
  const workspaceStat = await stat(workspace).catch(() => undefined);
  if (!workspaceStat?.isDirectory()) {
    throw new BottleError("USAGE", `the workspace ${workspace} is not a folder`, {
      hint: "pass --workspace DIR or cd into your project",
    });
  }
  const home = projectHome(config.dataDir, workspace);

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
  const name = `claude-bottle-${slug}-${randomBytes(3).toString("hex")}`;
  const parsed = runSpecSchema.safeParse({
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
    resources: config.resources ?? {},
    network: {
      mode: config.network?.mode ?? "allowlist",
      allow: config.network?.allow ?? [],
      presets: config.network?.presets ?? [],
    },
    passthroughCredentials: config.credentials?.passthrough ?? false,
    deniedLogPath: join(projectDataDir(config.dataDir, workspace), "logs", `${name}.denied.jsonl`),
    name,
    labels: { [bottleLabels.workspace]: workspace, [bottleLabels.project]: slug },
  });
  if (!parsed.success) {
    throw new BottleError(
      "USAGE",
      parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
    );
  }
  return parsed.data;
}

/**
 * Who the agent runs as. A regular user: that user, so files it creates are theirs. Root: never
 * root inside; the workspace's owner when that is a regular user (`sudo claude-bottle` in someone's
 * project), otherwise nobody in particular (the backend's unprivileged user).
 */
export async function agentIdentity(
  workspace: string,
  host: { uid: number; gid: number } | undefined,
  statOf: (path: string) => Promise<{ uid: number; gid: number }> = stat,
): Promise<{ uid: number; gid: number } | undefined> {
  if (host === undefined || host.uid !== 0) return host;
  const owner = await statOf(workspace);
  return owner.uid !== 0 ? { uid: owner.uid, gid: owner.gid } : undefined;
}

/** Create the project's bottle home on first use, owned by the agent's identity. */
export async function ensureProjectHome(
  home: string,
  identity?: { uid: number; gid: number },
): Promise<void> {
  await mkdir(join(home, ".claude"), { recursive: true });
  await mkdir(join(dirname(home), "logs"), { recursive: true });
  if (identity && process.getuid?.() === 0) {
    for (const path of [dirname(home), home, join(home, ".claude")])
      await chown(path, identity.uid, identity.gid);
  }
}

/**
 * Claude Code's own state in the bottle home (`.claude.json`), seeded so a first interactive run
 * starts at the prompt: onboarding counts as done (its connectivity check would go to
 * api.anthropic.com, which the bottle reaches only through the API forwarder), the workspace the
 * user chose to bottle is trusted, and claude-bottle's placeholder API key is approved (it is not a
 * secret; the forwarder swaps in the real key). Keys already present are left alone.
 */
export async function seedClaudeState(
  home: string,
  workspace: string,
  identity?: { uid: number; gid: number },
): Promise<void> {
  const path = join(home, ".claude.json");
  let state: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(await readFile(path, "utf8"));
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) state = parsed;
    else return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") return; // unreadable or mid-edit: leave it to Claude Code
  }
  state.hasCompletedOnboarding ??= true;
  const projects = (state.projects ?? {}) as Record<string, Record<string, unknown>>;
  projects[workspace] = { hasTrustDialogAccepted: true, ...projects[workspace] };
  state.projects = projects;
  const responses = (state.customApiKeyResponses ?? {}) as { approved?: string[]; rejected?: string[] };
  const placeholder = credentialPlaceholders.ANTHROPIC_API_KEY.slice(-20);
  const approved = responses.approved ?? [];
  const rejected = responses.rejected ?? [];
  if (!approved.includes(placeholder) && !rejected.includes(placeholder)) approved.push(placeholder);
  state.customApiKeyResponses = { ...responses, approved, rejected };
  await writeFile(path, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await chmod(path, 0o600); // it may hold account details: private, whatever mode it had before
  if (identity && process.getuid?.() === 0) await chown(path, identity.uid, identity.gid);
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
    await mkdir(join(home, ".claude"), { recursive: true });
    await copyFile(from, join(home, ".claude", name));
    if (identity && process.getuid?.() === 0)
      await chown(join(home, ".claude", name), identity.uid, identity.gid);
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
