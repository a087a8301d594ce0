/**
 * The contract every sandbox runtime implements. A backend turns an image reference into something
 * its runtime can boot (`prepare`), boots it for one run (`run`), and says whether it can work on
 * this machine at all (`checkAvailability`). Nothing here is specific to any runtime.
 *
 * A backend package default-exports a BackendFactory and may export a zod `optionsSchema` for its
 * config section; it declares what it enforces in `capabilities`, and proves it with the
 * conformance suite (`backendConformanceSuite` from `@claude-bottle/core/testing`). The README's
 * "Adding a backend" and examples/backend-minimal-docker show one end to end. Errors a user can
 * meet are BottleErrors (errors.ts) that name the backend and give a hint.
 */
import type { RunResult, RunSpec } from "./run-spec.js";

export interface Availability {
  available: boolean;
  /** Runtime and version found, e.g. "Docker Engine 27.3.1". */
  version?: string;
  /** Why the backend cannot run here (when not available). */
  reason?: string;
  /** What the user can do about it (when not available). */
  fix?: string;
  /** What the user should know even though the backend can run (an engine with a known flaw...). */
  notes?: string[];
}

/** One step of slow work, e.g. "build image", "push to local registry". */
export interface ProgressReporter {
  step<T>(title: string, work: () => Promise<T>): Promise<T>;
  /** A line of detail for the current step (build output, for instance). */
  detail?(line: string): void;
}

export const silentProgress: ProgressReporter = {
  step: (_title, work) => work(),
};

export interface PrepareOptions {
  progress?: ProgressReporter;
  signal?: AbortSignal;
}

export interface Backend<Prepared = unknown> {
  /**
   * The backend's name in messages ("the NAME backend cannot...") and in BottleInfo.backend:
   * "docker", "smolmachines", or a third party's own. Users pick a third-party backend by its
   * package name, which this need not equal.
   */
  readonly name: string;
  /** The RunSpec guarantees this backend enforces; what is not declared here, it does not do. */
  readonly capabilities?: BackendCapabilities;
  /**
   * Whether the runtime works here (`claude-bottle doctor`, and the suite before anything else).
   * Resolves with `available: false`, a reason and a fix rather than rejecting when it does not.
   */
  checkAvailability(): Promise<Availability>;
  /**
   * Turn an image reference into what this runtime boots (an image id, a packed VM artifact...).
   * `imageRef` is the agent image's name (config `image.ref`, or `image.use` / `--image` for a
   * finished one); the factory's `options.image` says how to build it when that is the backend's
   * job. Called before every run, so it should return quickly when nothing changed. Failures are
   * BottleErrors (PREPARE_FAILED...); an aborted `signal` rejects with ABORTED.
   */
  prepare(imageRef: string, options?: PrepareOptions): Promise<Prepared>;
  /**
   * Run one bottled session; resolves with the agent's exit code once it ends (a non-zero code is
   * a result, not an error). `spec` is already valid; the bottle uses this process's stdin, stdout
   * and stderr (a terminal when `spec.tty`). A spec the backend cannot carry out (a workspace that
   * does not exist, a guarantee it cannot give) rejects with a BottleError naming the backend, with
   * a hint, and leaves nothing behind. When `signal` aborts (Ctrl-C, SIGTERM), also before the
   * bottle exists, the backend tears the bottle down and rejects with an ABORTED error.
   */
  run(prepared: Prepared, spec: RunSpec, options?: { signal?: AbortSignal }): Promise<RunResult>;
  /**
   * Bottles of this backend that exist now, for `claude-bottle ps`: those it started, whoever
   * started them (find them by `bottleLabels`, with `backend` set to this backend's name).
   */
  listBottles?(): Promise<BottleInfo[]>;
  /** Stop and remove one bottle by name, for `claude-bottle stop`. */
  stopBottle?(name: string): Promise<void>;
  /**
   * What already holds the name `name` in this backend (a bottle, or anything else a run of that
   * name would create or remove, such as a container or volume of the same name), described for an
   * error message; undefined when the name is free. Asked before a run starts.
   */
  nameInUse?(name: string): Promise<string | undefined>;
  /**
   * The Claude Code version `imageRef` was built with, when the image says so (the bundled
   * Dockerfile records it), for `claude-bottle doctor`; undefined when it does not or is not there.
   */
  claudeCodeVersionIn?(imageRef: string): Promise<string | undefined>;
  /** What the backend keeps in claude-bottle's cache, most recently used first, for `claude-bottle cache ls`. */
  listCache?(): Promise<CacheEntry[]>;
  /** Remove cache entries and leftovers, for `claude-bottle cache prune`. */
  pruneCache?(options?: PruneCacheOptions): Promise<PruneCacheResult>;
}

/**
 * The RunSpec guarantees a backend enforces. What it does not declare, it does not do: the CLI then
 * refuses the run or warns before the bottle starts (capabilityGaps in capabilities.ts), never
 * silently, and the conformance suite checks every guarantee that is declared. Declare only what
 * holds against an agent that tries to break it; a backend whose guarantees depend on the machine
 * (cgroup version, runtime version) may work them out in its factory.
 */
export interface BackendCapabilities {
  /**
   * `spec.secrets` stay outside the bottle: the bottle gets placeholders, and something it cannot
   * read puts the real credential on its requests to `spec.anthropicBaseUrl`. Without it, a run
   * with a credential needs `spec.passthroughCredentials`.
   */
  credentials?: boolean;
  /** `spec.network`'s allow-list holds: the bottle reaches the API and the allowed hosts, nothing else. */
  egress?: boolean;
  /** Every refused connection is written to `spec.deniedLogPath` and returned in `RunResult.deniedHosts`. */
  denialLog?: boolean;
  /** `spec.user` is who the agent runs as: the files it writes in the workspace belong to that user. */
  user?: boolean;
  /** Which of `spec.resources` are enforced. */
  resources?: { cpus?: boolean; memoryMiB?: boolean; pids?: boolean };
  /** `spec.readOnlyPaths` are read-only in the bottle and cannot be renamed or removed. */
  readOnlyPaths?: boolean;
  /** `spec.network.hostPorts`: the bottle reaches exactly those ports of the user's machine, on its localhost. */
  hostPorts?: boolean;
  /** `spec.network.publish`: those ports of the bottle answer on the user's 127.0.0.1. */
  publish?: boolean;
}

/** One artifact a backend keeps in its cache (a packed VM image, say), for `claude-bottle cache ls`. */
export interface CacheEntry {
  /** What identifies it (a digest). */
  id: string;
  /** Where it is on disk, when it is a file. */
  path?: string;
  /** The image it was made from, when known. */
  imageRef?: string;
  sizeBytes: number;
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601. */
  lastUsedAt: string;
}

export interface PruneCacheOptions {
  /** Remove every entry, not only leftovers. */
  all?: boolean;
  /** Remove entries not used for this long. */
  olderThanMs?: number;
}

/** What `claude-bottle cache prune` removed, for its report. */
export interface PruneCacheResult {
  removed: CacheEntry[];
  /** Entries in use right now, kept. */
  busy: string[];
  /** Other things removed (leftovers of interrupted work, helpers whose owner died), one line each. */
  leftovers: string[];
  freedBytes: number;
}

/** A bottle as `claude-bottle ps` shows it. */
export interface BottleInfo {
  name: string;
  /**
   * The name the run gave it (RunSpec.name), when `name` is the backend's own longer form of it
   * (smolmachines adds a suffix to each machine's name); `--name` and the in-use check go by it.
   */
  bottle?: string;
  backend: string;
  /** The host workspace it has mounted. */
  workspace: string;
  /** When it started (ISO 8601). */
  startedAt: string;
  /** The runtime's own word for its state ("running", "Up 3 minutes"...). */
  status: string;
  /**
   * Not a bottle but something the backend keeps between runs on purpose, such as a project's warm
   * gateway: listed so that it can be seen and stopped, holding no run's credential once its runs
   * have ended. Absent for a bottle.
   */
  kept?: boolean;
}

/** Labels every bottle carries, so `ps` and `stop` find it whatever started it. */
export const bottleLabels = {
  role: "dev.claude-bottle.role",
  workspace: "dev.claude-bottle.workspace",
  project: "dev.claude-bottle.project",
  backend: "dev.claude-bottle.backend",
} as const;

/** How the agent image is made, from the config's `image` section; every runtime boots one. */
export type AgentImageSource =
  /** The bundled Dockerfile, on `base`, with Claude Code `claudeCodeVersion`. */
  | { kind: "bundled"; base?: string; claudeCodeVersion?: string; extraCaCerts?: string }
  /** The user's own Dockerfile and context. */
  | { kind: "dockerfile"; dockerfile: string; context: string; claudeCodeVersion?: string }
  /** A finished image, used as it is. */
  | { kind: "existing" };

/**
 * Settings every backend receives, whatever its runtime: how to make the agent image and where
 * claude-bottle keeps its files. A backend's own options (its `backends.<name>` config section,
 * checked by the `optionsSchema` its package exports) come beside these.
 */
export interface SharedBackendOptions {
  /** How `prepare` makes the agent image. */
  image: AgentImageSource;
  /** claude-bottle's cache root; a backend keeps its artifacts in a subfolder named after itself. */
  cacheDir: string;
  /** claude-bottle's data root. */
  dataDir: string;
  /**
   * What claude-bottle's own helper programs (a gateway beside the bottle, say) run on, whatever
   * the agent image is: a Node image (image.base) and extra CA certificates (tls.extraCaCerts).
   * Unset, a bundled agent image's settings are used, else node:24-bookworm-slim.
   */
  helperImage?: { base?: string; extraCaCerts?: string };
}

/**
 * What a backend package's default export is: a function that takes the backend's options
 * (shared settings plus the backend's own config section, `backends.<package name>`, as the
 * package's `optionsSchema` parsed it) and returns a Backend. It is called once per command, also
 * for commands that run nothing (`doctor`, `ps`), so it should only set things up, not start any.
 * Declare it with `satisfies BackendFactory<MyOptions>` to keep its own types.
 */
export type BackendFactory<
  Options extends SharedBackendOptions = SharedBackendOptions,
  Prepared = unknown,
> = (options: Options) => Backend<Prepared>;

/** True when `value` has the shape of a Backend (used to check third-party packages before use). */
export function isBackend(value: unknown): value is Backend {
  if (typeof value !== "object" || value === null) return false;
  const candidate = value as Record<string, unknown>;
  return (
    typeof candidate.name === "string" &&
    candidate.name.length > 0 &&
    typeof candidate.prepare === "function" &&
    typeof candidate.run === "function" &&
    typeof candidate.checkAvailability === "function"
  );
}
