/**
 * How a RunSpec becomes `docker run` / `podman run` arguments. Pure functions: no engine call, no
 * environment, so every mapping is unit-tested and `--dry-run` shows exactly what runs. Where the
 * engines differ, the flavour (engine-flavor.ts) says how.
 */
import { basename, posix } from "node:path";
import { BottleError, bottleLabels, defaults, type RunSpec } from "@claude-bottle/core";
import { relayPath } from "@claude-bottle/gateway";
import type { EngineFlavor } from "./engine-flavor.js";

/** What the argv builders need of the engine: its flavour and the options every `run` gets. */
export interface EngineArgs {
  readonly flavor: EngineFlavor;
  /** Put right after `run` (a Docker runtime override); ImageEngine.runOptions. */
  readonly runOptions: readonly string[];
  /** The init `--init` mounts, where the engine's own is missing; ImageEngine.initPath. */
  readonly initPath?: string | undefined;
  /** Which limits the engine applies here (all when unset); ImageEngine.limits. */
  readonly limits?: EngineLimits | undefined;
}

/**
 * The resource limits an engine can apply. Rootless Podman gets only the cgroup controllers
 * delegated to the user (none on cgroup v1) and ignores the other flags with a warning on the
 * user's terminal, so those are not passed at all; the backend declares what it enforces.
 */
export interface EngineLimits {
  cpus: boolean;
  memory: boolean;
  pids: boolean;
}

/** `--init`, with the engine's init named where its own is missing. */
export function initArgs(engine: EngineArgs): string[] {
  return engine.initPath ? ["--init", "--init-path", engine.initPath] : ["--init"];
}

/** The limit flags among `wanted` that the engine applies here. */
export function limitArgs(
  engine: EngineArgs,
  wanted: { pids?: number; memoryMiB?: number; cpus?: number | undefined },
): string[] {
  const limits = engine.limits ?? { cpus: true, memory: true, pids: true };
  const args: string[] = [];
  if (limits.pids && wanted.pids !== undefined) args.push("--pids-limit", String(wanted.pids));
  if (limits.memory && wanted.memoryMiB !== undefined) args.push("--memory", `${wanted.memoryMiB}m`);
  if (limits.cpus && wanted.cpus !== undefined) args.push("--cpus", String(wanted.cpus));
  return args;
}

/** Limits a bottle gets when the config sets none. CPUs stay uncapped unless configured. */
/**
 * Who the agent runs as when the RunSpec names no user (the host's is unknown): the agent image's
 * `claude` user.
 */
export const fallbackUser = { uid: 10001, gid: 10001 } as const;

/** The bottle's root filesystem is read-only; scratch space lives in memory here. */
export const scratchTmpfs = "/tmp:rw,exec,nosuid,nodev,mode=1777";

export interface BottleRunInput {
  spec: RunSpec;
  /** The image to run (the id `prepare` returned). */
  image: string;
  /**
   * The network the bottle joins: `none` (its only way out is its gateway, through `gatewayVolume`),
   * or `engine` (the engine's ordinary network, see EngineFlavor.networkArgs) in `open` mode.
   */
  network: "none" | "engine";
  /** The volume shared with the bottle's gateway, mounted read-only at the gateway's meeting folder. */
  gatewayVolume?: { name: string; target: string };
  /** The volume for published ports, mounted read-write: the relay makes its sockets there. */
  outboundVolume?: { name: string; target: string };
  /** Put before the command: the relay (gateway's bottleBootstrap), which offers the gateway on loopback and runs the command. */
  commandPrefix?: readonly string[];
  /** The relay's program on the host (relay-file.ts), mounted read-only at the gateway's `relayPath`. */
  relayFile?: string;
  /** Environment the host services hand out (where the API is, how to reach the network). */
  serviceEnv?: Record<string, string>;
  /** Credentials passed by name only; their values are in the CLI's environment, never in argv. */
  secretNames?: readonly string[];
}

/**
 * What every gateway container is run with, of its run's own or a project's warm one: an ordinary
 * network (the gateway is where the bottle's allowed traffic leaves from), the host name entries,
 * no capabilities, a read-only root, small limits, no logs, and `labels`.
 */
export function gatewayContainerOptions(
  engine: EngineArgs,
  hosts: Readonly<Record<string, string>> | undefined,
  labels: Readonly<Record<string, string>>,
): string[] {
  const { flavor } = engine;
  const args = [...flavor.networkArgs, ...flavor.hostNameArgs];
  for (const [name, address] of Object.entries(hosts ?? {})) args.push("--add-host", `${name}:${address}`);
  // It runs as root only to own the shared volume's root; it has no capabilities and cannot gain any.
  // (Under rootless Podman that root is the invoking user, mapped.)
  args.push("--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only");
  args.push(...limitArgs(engine, { pids: 256, memoryMiB: 256 }), "--log-driver", "none");
  for (const [key, value] of Object.entries(labels)) args.push("--label", `${key}=${value}`);
  return args;
}

/** The labels a bottle's container (and its gateway) carries, so `ps` and `stop` find it. */
export function bottleLabelsFor(spec: RunSpec, flavor: EngineFlavor): Record<string, string> {
  return {
    ...spec.labels,
    [bottleLabels.role]: "bottle",
    [bottleLabels.backend]: flavor.name,
    [bottleLabels.workspace]: spec.workspace,
    [bottleLabels.project]: spec.labels[bottleLabels.project] ?? basename(spec.workspace),
  };
}

/** `run` arguments (without the CLI itself) for one bottled run. */
export function bottleRunArgs(engine: EngineArgs, input: BottleRunInput): string[] {
  const { spec } = input;
  const { flavor } = engine;
  const bind = (source: string, target: string, readOnly: boolean) =>
    bindMount(source, target, readOnly && flavor.readOnlyMountOption);
  for (const path of [spec.workspace, spec.home, ...spec.mounts.map((mount) => mount.source)])
    refuseEngineSocket(path, flavor);

  const user = spec.user ?? fallbackUser;
  // uid 0 (root on a root-owned workspace) runs like every bottle: `--cap-drop ALL` and
  // no-new-privileges below leave it no capability, so all it has over another uid is owning
  // root's files in its mounts. Claude Code refuses --dangerously-skip-permissions as root unless
  // told it is in a sandbox; the fallback user gets the marker too, as it always has.
  const sandboxMarker = spec.user === undefined || spec.user.uid === 0;
  const pids = spec.resources.pids ?? defaults.resources.pids;
  const memoryMiB = spec.resources.memoryMiB ?? defaults.resources.memoryMiB;
  const cpus = spec.resources.cpus ?? defaults.resources.cpus;

  const network = input.network === "none" ? ["--network", "none"] : flavor.networkArgs;
  const args = ["run", ...engine.runOptions, "--rm", "--name", spec.name, ...network, ...initArgs(engine)];
  args.push("--cap-drop", "ALL", "--security-opt", "no-new-privileges");
  args.push("--read-only", "--tmpfs", scratchTmpfs);
  args.push(...limitArgs(engine, { pids, memoryMiB, cpus }));
  // The session is attached to this process; the engine need not keep a copy of it on disk.
  args.push("--log-driver", "none");
  args.push(...flavor.userNamespaceArgs, "--user", `${user.uid}:${user.gid}`);
  for (const [key, value] of Object.entries(bottleLabelsFor(spec, flavor)))
    args.push("--label", `${key}=${value}`);

  args.push("--mount", bind(spec.workspace, spec.workspace, false));
  args.push("--mount", bind(spec.home, spec.homeTarget, false));
  for (const mount of spec.mounts) args.push("--mount", bind(mount.source, mount.target, mount.readOnly));
  for (const mount of readOnlyPathMounts(spec, flavor)) {
    refuseEngineSocket(mount.source, flavor);
    args.push("--mount", bind(mount.source, mount.target, mount.readOnly));
  }
  // Read-only is enough to connect to the gateway's sockets, and the bottle can change nothing there.
  if (input.gatewayVolume)
    args.push(
      "--mount",
      `type=volume,source=${input.gatewayVolume.name},target=${input.gatewayVolume.target},${flavor.readOnlyMountOption}`,
    );
  if (input.relayFile) args.push("--mount", bind(input.relayFile, relayPath, true));
  if (input.outboundVolume)
    args.push(
      "--mount",
      `type=volume,source=${input.outboundVolume.name},target=${input.outboundVolume.target}`,
    );
  args.push("--workdir", spec.workspace);

  // Later sources win: the host services' addresses over plain env, credentials over both, and the
  // home directory and sandbox marker over everything.
  const env = new Map<string, string | undefined>();
  for (const [name, value] of Object.entries(spec.env)) env.set(name, value);
  for (const [name, value] of Object.entries(input.serviceEnv ?? {})) env.set(name, value);
  for (const name of input.secretNames ?? []) env.set(name, undefined);
  env.set("HOME", spec.homeTarget);
  if (sandboxMarker) env.set("IS_SANDBOX", "1");
  for (const [name, value] of env) {
    if (!envName.test(name)) {
      throw new BottleError("INVALID_CONFIG", `"${name}" is not a valid environment variable name`, {
        backend: flavor.name,
        hint: "use letters, digits and underscores, not starting with a digit",
      });
    }
    // `--env NAME` without a value makes the CLI copy NAME from its own environment.
    args.push("--env", value === undefined ? name : `${name}=${value}`);
  }

  if (spec.tty) args.push("--interactive", "--tty");
  else if (spec.stdin) args.push("--interactive");

  args.push(input.image, ...(input.commandPrefix ?? []), ...spec.command);
  return args;
}

/**
 * The command as a shell line for `--dry-run` and debug output. Any secret value that still shows up
 * (a credential pasted into plain env, say) is replaced by `***`.
 */
export function formatEngineCommand(
  commandLine: readonly string[],
  secrets: Record<string, string> = {},
): string {
  const values = Object.values(secrets).filter((value) => value.length > 0);
  // Longest first, so a secret that contains another is redacted whole.
  values.sort((a, b) => b.length - a.length);
  return commandLine
    .map((arg) => values.reduce((text, value) => text.replaceAll(value, "***"), arg))
    .map(shellQuote)
    .join(" ");
}

/**
 * The bind mounts that make `spec.readOnlyPaths` read-only: each path bound read-only onto itself,
 * and every folder between it and the mount that holds it (the workspace, or an extra mount) bound
 * read-write onto itself. A read-only bind alone stops writes, `rm` and `mv` of the path (EROFS,
 * EBUSY), but the folder above it can still be renamed, and the mount moves along: `mv .git x`
 * then `mkdir .git` gives the bottle a fresh, writable `.git/config`. A folder that is itself a
 * mount point can't be renamed or removed, so pinning each one closes that way round. Parents come
 * first (Docker also sorts mounts by depth).
 */
export function readOnlyPathMounts(
  spec: RunSpec,
  flavor: EngineFlavor,
): { source: string; target: string; readOnly: boolean }[] {
  const roots = [{ source: spec.workspace, target: spec.workspace, readOnly: false }, ...spec.mounts];
  const wanted = new Map<string, { source: string; readOnly: boolean }>();
  for (const path of spec.readOnlyPaths.map((p) => posix.normalize(p).replace(/(.)\/$/, "$1"))) {
    // The deepest mount that holds the path decides where it comes from on the host.
    const root = roots
      .filter((r) => path === r.target || path.startsWith(r.target === "/" ? "/" : `${r.target}/`))
      .sort((a, b) => b.target.length - a.target.length)[0];
    if (!root) {
      throw new BottleError(
        "INVALID_CONFIG",
        `the read-only path ${path} is not inside the workspace or a mount`,
        {
          backend: flavor.name,
          hint: "list only paths inside the workspace or an extra mount in readOnlyPaths",
        },
      );
    }
    if (root.readOnly) continue; // already read-only, and its mount point can't be renamed
    const hostPath = (target: string) => posix.join(root.source, posix.relative(root.target, target));
    const rel = posix.relative(root.target, path);
    const parts = rel === "" ? [] : rel.split("/");
    for (let depth = 1; depth < parts.length; depth += 1) {
      const folder = posix.join(root.target, ...parts.slice(0, depth));
      if (!wanted.has(folder)) wanted.set(folder, { source: hostPath(folder), readOnly: false });
    }
    wanted.set(path, { source: hostPath(path), readOnly: true });
  }
  return [...wanted.entries()]
    .map(([target, { source, readOnly }]) => ({ source, target, readOnly }))
    .sort(
      (a, b) => a.target.split("/").length - b.target.split("/").length || a.target.localeCompare(b.target),
    );
}

const envName = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * One `--mount` value; `readOnly` is the flavour's read-only option, or false. The CLIs parse it as
 * a CSV record, so fields holding commas or quotes are quoted.
 */
function bindMount(source: string, target: string, readOnly: string | false): string {
  const fields = ["type=bind", `source=${source}`, `target=${target}`];
  if (readOnly) fields.push(readOnly);
  return fields
    .map((field) => (/[",\n\r]/.test(field) ? `"${field.replaceAll('"', '""')}"` : field))
    .join(",");
}

/** Where engines keep their API sockets: system-wide, and per user (rootless Podman, rootless Docker). */
const socketHomes = ["/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock"];
const socketNames = new Set(["docker.sock", "podman.sock"]);
/** A user's runtime folder, or its `podman` folder: they hold that user's engine sockets. */
const userSocketHome = /^\/run\/user(\/\d+(\/podman)?)?$/;

/**
 * Mounting an engine's socket (or a folder holding it) would hand the bottle control of the engine,
 * and so of the host or at least of every container and file of the user. Both engines' sockets
 * are refused whichever engine runs the bottle: they may both be on the machine.
 */
function refuseEngineSocket(path: string, flavor: EngineFlavor): void {
  const normal = posix.normalize(path).replace(/(.)\/$/, "$1");
  const holds = (socket: string) =>
    socket === normal || socket.startsWith(normal === "/" ? "/" : `${normal}/`);
  const exposes = socketNames.has(basename(normal)) || socketHomes.some(holds) || userSocketHome.test(normal);
  if (exposes) {
    throw new BottleError(
      "INVALID_CONFIG",
      `mounting ${path} would give the bottle a container engine's socket`,
      {
        backend: flavor.name,
        hint: "an engine's socket controls its containers and the files they reach; mount a narrower folder instead",
      },
    );
  }
}

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_/.,:=@%+-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}
