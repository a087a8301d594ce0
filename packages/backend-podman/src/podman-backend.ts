/**
 * The Podman backend: Claude Code in a hardened container of rootless Podman, run as the invoking
 * user with no daemon and no root. It is the Docker backend's design on another engine, and shares
 * all of it through @claude-bottle/container-engine (argv, run and clean-up, the gateway container,
 * `ps`/`stop`): the bottle has no network (`--network none`) and reaches only its gateway container,
 * which holds the real credential and the egress policy, through unix sockets in a shared volume.
 * Rootless Podman has no bridge on the host either, so nothing here depends on where the engine's
 * network lives.
 *
 * What is Podman's own lives here: whether rootless Podman works on this machine and how it must be
 * driven (availability.ts), `--userns=keep-id` so that the bottle's writes are the user's files
 * (the flavour's), and the rule that the bottle runs as the invoking user, since keep-id maps only
 * that user onto itself.
 */
import {
  claudeCodeVersionOf,
  defaultWarmGatewayMinutes,
  ImageEngine,
  listBottles,
  nameInUse,
  type PreparedBottleImages,
  podmanFlavor,
  prepareBottleImages,
  runBottle,
  stopBottle,
  warmGatewayOptionsShape,
} from "@claude-bottle/container-engine";
import {
  type Availability,
  type Backend,
  BottleError,
  type RunResult,
  type RunSpec,
  type SharedBackendOptions,
} from "@claude-bottle/core";
import { z } from "zod";
import {
  assessPodman,
  enforceableLimits,
  type PodmanAssessment,
  type PodmanHost,
  systemPodmanHost,
} from "./availability.js";

/**
 * The podman section of the config file (`backends.podman`): everything a bottle needs is configured
 * once for all backends; Podman's own is how long a project's gateway stays warm (container-engine's
 * warm-gateway.ts). Strict: misspelt keys fail.
 */
export const podmanOptionsSchema = z.strictObject({ ...warmGatewayOptionsShape });
export { podmanOptionsSchema as optionsSchema };

export interface PodmanOptions extends SharedBackendOptions {
  /** The podman CLI to call (default `podman` on PATH). */
  binary?: string;
  /** Environment for the CLI (CONTAINER_HOST, XDG_RUNTIME_DIR...); defaults to this process's. */
  env?: NodeJS.ProcessEnv;
  /** What the availability checks read; default the machine itself. For tests and embedding programs. */
  host?: PodmanHost;
  /** Names the gateway resolves to fixed addresses (`--add-host`), before DNS. Not a config setting. */
  gatewayHosts?: Readonly<Record<string, string>>;
  /** Minutes a project's gateway stays once idle (default `defaultWarmGatewayMinutes`); 0: one per run. */
  warmGatewayMinutes?: number;
}

/** What `prepare` hands to `run`: the agent image's id, and the gateway image's tag. */
export type PreparedPodmanImage = PreparedBottleImages;

export function podman(options: PodmanOptions): Backend<PreparedPodmanImage> {
  const host = options.host ?? systemPodmanHost(options.binary, options.env);
  // Asked once per process: every command of a run needs the same answer, and it costs a `podman info`.
  let assessment: Promise<PodmanAssessment> | undefined;
  const limits = enforceableLimits(host);
  const assess = () => {
    assessment ??= assessPodman(host);
    return assessment;
  };

  /** The engine, set up as this machine needs it; refuses with the availability check's reason. */
  const engine = async (): Promise<ImageEngine> => {
    const result = await assess();
    if (!result.available) {
      throw new BottleError("BACKEND_UNAVAILABLE", result.reason, { backend: "podman", hint: result.fix });
    }
    const { setup } = result;
    return new ImageEngine({
      flavor: podmanFlavor,
      ...(options.binary && { binary: options.binary }),
      ...(options.env && { env: options.env }),
      ...(setup.runtime && { runtime: setup.runtime }),
      ...(setup.initPath && { initPath: setup.initPath }),
      limits,
    });
  };

  /** The engine as set up here when Podman is usable, else the plain CLI. */
  const anyEngine = async (): Promise<ImageEngine> =>
    (await assess()).available
      ? engine()
      : new ImageEngine({
          flavor: podmanFlavor,
          ...(options.binary && { binary: options.binary }),
          ...(options.env && { env: options.env }),
        });

  return {
    name: "podman",
    // The Docker bottle's guarantees, through the same container-engine code (the gateway holds the
    // key and the policy; read-only paths are bind mounts), and the user: the invoking one, which
    // is the only one `run` accepts. Limits: only those cgroup controllers the user has.
    capabilities: {
      credentials: true,
      egress: true,
      denialLog: true,
      user: true,
      resources: { cpus: limits.cpus, memoryMiB: limits.memory, pids: limits.pids },
      readOnlyPaths: true,
      hostPorts: true,
      publish: true,
    },

    async checkAvailability(): Promise<Availability> {
      const result = await assess();
      if (!result.available) {
        return {
          available: false,
          reason: result.reason,
          fix: result.fix,
          ...(result.version && { version: result.version }),
        };
      }
      const { setup } = result;
      return {
        available: true,
        version: setup.version,
        ...(setup.notes.length > 0 && { notes: setup.notes }),
      };
    },

    async prepare(imageRef, prepareOptions = {}) {
      return prepareBottleImages(await engine(), options, imageRef, prepareOptions);
    },

    async run(prepared, spec, runOptions = {}): Promise<RunResult> {
      return runBottle(await engine(), prepared, asInvokingUser(spec, host), {
        ...(runOptions.signal && { signal: runOptions.signal }),
        ...(options.gatewayHosts && { gatewayHosts: options.gatewayHosts }),
        warmGatewayMinutes: options.warmGatewayMinutes ?? defaultWarmGatewayMinutes,
      });
    },

    // Bottles made earlier are listed and stopped even where a new one could not start now
    // (/dev/net/tun closed again, say): listing and removing need no more than the podman CLI.
    listBottles: async () => listBottles(await anyEngine()),
    stopBottle: async (name) => stopBottle(await anyEngine(), name),
    nameInUse: async (name) => nameInUse(await anyEngine(), name),
    claudeCodeVersionIn: async (imageRef) => claudeCodeVersionOf(await anyEngine(), imageRef),
  };
}

/**
 * The spec, run as the invoking user. `--userns=keep-id` maps that user, and only that user, onto
 * the same uid and gid in the bottle; any other uid would be one of the user's subordinate ids on
 * the host, so files the agent writes in the workspace would belong to no one the user knows. So a
 * spec naming another user is refused, and one naming none gets the invoking user (not the image's
 * own user, which would be such a subordinate id). Root never gets here: availability refuses it,
 * since Podman run by root is not rootless.
 */
export function asInvokingUser(spec: RunSpec, host: PodmanHost): RunSpec {
  const me = host.user();
  if (!spec.user) return { ...spec, user: { uid: me.uid, gid: me.gid } };
  if (spec.user.uid !== me.uid || spec.user.gid !== me.gid) {
    throw new BottleError(
      "INVALID_CONFIG",
      `the Podman backend runs the bottle as you (${me.uid}:${me.gid}), not as ${spec.user.uid}:${spec.user.gid}`,
      {
        backend: "podman",
        hint: "rootless Podman maps only your own user onto the bottle's; run claude-bottle as the user who should own the files",
      },
    );
  }
  return spec;
}
