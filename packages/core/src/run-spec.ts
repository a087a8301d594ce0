import { isAbsolute } from "node:path";
import { z } from "zod";
import { networkPolicySchema } from "./network-policy.js";

/** The public Anthropic API: where Claude Code goes unless `anthropicBaseUrl` says otherwise. */
export const defaultAnthropicBaseUrl = "https://api.anthropic.com";

/**
 * The credentials Claude Code reads from its environment, most preferred first: what may be in
 * `spec.secrets`, and what a backend that declares `capabilities.credentials` keeps outside.
 */
export const credentialNames = [
  "ANTHROPIC_API_KEY",
  "ANTHROPIC_AUTH_TOKEN",
  "CLAUDE_CODE_OAUTH_TOKEN",
] as const;

const absolutePath = z.string().refine(isAbsolute, { message: "expected an absolute path" });

export const resourcesSchema = z.object({
  /** CPUs the bottle may use (fractions allowed on Docker). */
  cpus: z.number().positive().optional(),
  /** Memory limit in MiB. */
  memoryMiB: z.number().int().positive().optional(),
  /** Most processes the bottle may run at once (Docker only). */
  pids: z.number().int().positive().optional(),
});
export type Resources = z.infer<typeof resourcesSchema>;

export const mountSchema = z.object({
  source: absolutePath,
  target: absolutePath,
  readOnly: z.boolean().default(false),
});
export type Mount = z.infer<typeof mountSchema>;

/**
 * What one bottled run needs, independent of the runtime that provides it. Backends receive a
 * parsed, valid RunSpec; they map it onto their runtime and nothing else.
 */
export const runSpecSchema = z.object({
  /** The project folder on the host. It is mounted at the same absolute path and is the working directory. */
  workspace: absolutePath,
  /** The argv to run inside the bottle, e.g. `["claude", "--dangerously-skip-permissions", "-p", "hi"]`. */
  command: z.array(z.string()).min(1),
  /** Environment variables set inside the bottle. Nothing secret: these may be shown by `--dry-run`. */
  env: z.record(z.string(), z.string()).default({}),
  /**
   * The agent's credentials (ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN) from the host environment.
   * Backends keep them off command lines, out of images and out of any output.
   */
  secrets: z.record(z.string(), z.string()).default({}),
  /** The API endpoint Claude Code uses (anthropic.baseUrl); a loopback address on the host must work. */
  anthropicBaseUrl: z.url().optional(),
  /**
   * Hand `secrets` to the bottle as they are (credentials.passthrough). By default they stay on the
   * host: the bottle gets placeholders and the host's API forwarder adds the real credential.
   */
  passthroughCredentials: z.boolean().optional(),
  /** Allocate a terminal (interactive use). Without one, stdin/stdout/stderr are plain pipes. */
  tty: z.boolean().default(false),
  /** Keep stdin open and forward it into the bottle. */
  stdin: z.boolean().default(false),
  /** The host folder that becomes the agent's home directory: Claude Code's login, settings and sessions. */
  home: absolutePath,
  /** The home directory's path inside the bottle. */
  homeTarget: absolutePath.default("/home/claude"),
  /**
   * Who the agent runs as inside the bottle; files it creates in the workspace belong to this id on
   * the host. Without one, the backend picks an unprivileged user of its own. uid 0 (root on a
   * root-owned workspace) shares the host's kernel in a container backend, so there it must stay
   * without privilege: no capabilities and no way to gain any (no-new-privileges). Either way
   * Claude Code is told it runs in a sandbox (IS_SANDBOX=1), without which it refuses
   * `--dangerously-skip-permissions` as root. (A VM backend's root is the VM's own.)
   */
  user: z.object({ uid: z.number().int().nonnegative(), gid: z.number().int().nonnegative() }).optional(),
  /** Further host folders to mount. */
  mounts: z.array(mountSchema).default([]),
  /**
   * Existing paths inside the workspace (or an extra mount) that the bottle must not change,
   * replace, rename or remove: git's config and hooks, which the host would otherwise execute
   * (see git-guard.ts). A backend that enforces them says so in `capabilities.readOnlyPaths`;
   * one that cannot still runs, and the CLI warns that the post-run report is all there is.
   */
  readOnlyPaths: z.array(absolutePath).default([]),
  resources: resourcesSchema.default({}),
  network: networkPolicySchema.default({ mode: "allowlist", allow: [] }),
  /** Where the egress proxy records each refused connection (host and time), one JSON line each. */
  deniedLogPath: absolutePath.optional(),
  /** A name for the bottle that `ps` and `stop` show; backends may add a suffix. */
  name: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/),
  /** Labels that identify the bottle (project, workspace) to `ps` and `stop`. */
  labels: z.record(z.string(), z.string()).default({}),
});

export type RunSpecInput = z.input<typeof runSpecSchema>;
export type RunSpec = z.output<typeof runSpecSchema>;

/** The outcome of a run: the agent's own exit code, which claude-bottle passes on as its own. */
export interface RunResult {
  exitCode: number;
  /** Hosts the bottle tried to reach and was refused, for the line `run` prints at exit. */
  deniedHosts?: string[];
  /** Things the user should know about the run (the backend could not enforce something, say). */
  warnings?: string[];
}
