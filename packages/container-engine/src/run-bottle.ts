/**
 * One bottled run on a container engine: the bottle, with no network of its own (`--network none`),
 * and its gateway beside it (gateway-container.ts: one of its own, or the project's warm gateway,
 * warm-gateway.ts), started together; `run` of the bottle attached to this process's terminal.
 * Whatever happens (exit, error, abort, the gateway failing) the bottle is gone when `runBottle`
 * settles, and so is the run's gateway with the volume they share, or the run's session in the warm
 * one (with its credential).
 *
 * The bottle's only way out is the gateway's unix sockets, in a volume it mounts read-only: the API
 * forwarder, which holds the real credential, and in `allowlist` mode the egress proxy, which
 * enforces `spec.network`. With no interface but loopback it cannot reach this machine, the engine's
 * machine, other containers or anything else by address, wherever the engine runs, and no firewall
 * rules are needed for that. In `open` mode the bottle joins the engine's network instead and reaches
 * whatever a container there reaches; only the API still goes through the gateway.
 *
 * The two containers start at once, and the bottle's command does not wait for the gateway: the
 * CLI gives the bottle its environment (bottleServices), and the relay inside holds each connection
 * until the gateway's sockets are there. So the gateway's start-up overlaps the command's own.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { abortedError, BottleError, type RunResult, type RunSpec, withCleanUp } from "@claude-bottle/core";
import { bottleBootstrap, meetingDir, outboundDir, runDir } from "@claude-bottle/gateway";
import type { Result, ResultPromise } from "execa";
import type { PreparedBottleImages } from "./bottle-images.js";
import { bottleRunArgs } from "./bottle-run-args.js";
import {
  bottleSecrets,
  bottleServices,
  gatewayNames,
  type RunningGateway,
  refuseReservedPorts,
  startGateway,
} from "./gateway-container.js";
import type { ImageEngine } from "./image-engine.js";
import { warmGatewayFor } from "./warm-gateway.js";

/** `docker run` and `podman run` exit 125 when the engine itself failed, before the command ran. */
const engineRunFailed = 125;

export interface RunBottleOptions {
  signal?: AbortSignal;
  /** Extra `name → address` entries for the gateway's /etc/hosts: how it resolves those names. */
  gatewayHosts?: Readonly<Record<string, string>>;
  /**
   * Keep the project's gateway warm between runs, and stop it after this many minutes without one
   * (warm-gateway.ts); 0 or absent: a gateway of the run's own, gone with it.
   */
  warmGatewayMinutes?: number;
}

export async function runBottle(
  engine: ImageEngine,
  images: PreparedBottleImages,
  spec: RunSpec,
  options: RunBottleOptions = {},
): Promise<RunResult> {
  const { signal } = options;
  throwIfAborted(signal, spec.name, engine);
  refuseReservedPorts(spec, engine.flavor);
  const services = bottleServices(spec);
  // A run the gateway may still refuse once its bottle started (published ports, a loopback API)
  // gets a gateway of its own; see warm-gateway.ts.
  const warm =
    (options.warmGatewayMinutes ?? 0) > 0 && !services.relay.waitForGateway
      ? warmGatewayFor(engine, {
          spec,
          image: images.gatewayImage,
          hosts: options.gatewayHosts,
          idleMinutes: options.warmGatewayMinutes ?? 0,
        })
      : undefined;
  if (!warm && engine.flavor.racyVolumeCreation) {
    // Both containers mount these, and would each create them (one failing) on such an engine.
    await engine.createVolume(gatewayNames(spec.name).volume);
    if ((spec.network.publish ?? []).length > 0) await engine.createVolume(gatewayNames(spec.name).outVolume);
  }
  const gateway = await startGateway(engine, {
    spec,
    placeholder: services.placeholder,
    image: images.gatewayImage,
    ...(options.gatewayHosts && { hosts: options.gatewayHosts }),
    warm,
  });
  // Clean up always; the run's own error, if any, is the one reported.
  const { result: exitCode, cleanedUp: deniedHosts } = await withCleanUp(async () => {
    throwIfAborted(signal, spec.name, engine);
    const secrets = { ...bottleSecrets(spec), ...services.secretEnv };
    const args = bottleRunArgs(engine, {
      spec,
      image: images.imageId,
      network: spec.network.mode === "open" ? "engine" : "none",
      relayFile: images.relayFile,
      gatewayVolume: { name: warm?.name ?? gatewayNames(spec.name).volume, target: meetingDir },
      ...((spec.network.publish ?? []).length > 0 && {
        outboundVolume: { name: gatewayNames(spec.name).outVolume, target: outboundDir },
      }),
      serviceEnv: services.env,
      commandPrefix: bottleBootstrap(
        warm ? { ...services.relay, runDir: runDir(warm.runId) } : services.relay,
        images.relayStart,
      ),
      secretNames: Object.keys(secrets),
    });
    return runContainer(engine, args, secrets, spec, signal, gateway);
  }, gateway.stop);
  return { exitCode, deniedHosts };
}

/**
 * `run` with this process's stdio; resolves with the agent's exit code. Credentials that
 * still go in (passthrough, or ones the forwarder cannot stand in for) are in the CLI's environment
 * only (argv names them). On abort the container is force-removed and the CLI awaited before rejecting.
 */
async function runContainer(
  engine: ImageEngine,
  args: string[],
  secrets: Record<string, string>,
  spec: RunSpec,
  signal: AbortSignal | undefined,
  gateway: RunningGateway,
): Promise<number> {
  const child = engine.spawn(args, {
    stdin: spec.tty || spec.stdin ? "inherit" : "ignore",
    stdout: "inherit",
    stderr: "inherit",
    env: { ...engine.env, ...secrets },
    reject: false,
  });
  const aborted = abortOf(signal);
  let result: Result | "aborted" | { gatewayFailed: unknown };
  try {
    result = await Promise.race([
      child,
      aborted.promise,
      gateway.failed.catch((error: unknown) => ({ gatewayFailed: error })),
    ]);
  } finally {
    aborted.dispose();
  }
  if (result === "aborted" || signal?.aborted) {
    await removeUntilExited(engine, spec.name, child);
    throw abortedRun(spec.name, engine);
  }
  if ("gatewayFailed" in result) {
    // Without its gateway the bottle has no way out: stop it, and say why.
    await removeUntilExited(engine, spec.name, child);
    throw result.gatewayFailed;
  }
  if (typeof result.exitCode !== "number") {
    // The CLI did not run (not installed) or was killed by a signal; the container may remain.
    await engine.removeContainer(spec.name).catch(() => undefined);
    throw engine.explain(result as Result, "RUN_FAILED", `running the bottle ${spec.name}`);
  }
  if (result.exitCode === engineRunFailed) {
    const { displayName, name } = engine.flavor;
    throw new BottleError(
      "RUN_FAILED",
      `${displayName} could not start the bottle ${spec.name} (${name} run exited 125)`,
      {
        backend: name,
        hint: `${displayName} printed the reason above; \`${engine.binary} info\` shows whether the engine is healthy`,
        cause: result,
      },
    );
  }
  return result.exitCode;
}

/**
 * Force-remove the container until the `run` child has exited, then once more. An abort can
 * land before the engine has created the container, so a single `rm` could miss it; once the CLI
 * has exited it sends nothing further, so the final `rm` leaves nothing behind.
 */
async function removeUntilExited(engine: ImageEngine, name: string, child: ResultPromise): Promise<void> {
  let exited = false;
  const done = child.then(
    () => {
      exited = true;
    },
    () => {
      exited = true;
    },
  );
  const giveUpAt = Date.now() + 15_000;
  while (!exited) {
    await engine.removeContainer(name).catch(() => undefined);
    await Promise.race([done, sleep(200)]);
    // A CLI that outlives its container this long is stuck; stop waiting for it.
    if (!exited && Date.now() > giveUpAt) child.kill("SIGKILL");
  }
  await engine.removeContainer(name);
}

function abortOf(signal: AbortSignal | undefined): { promise: Promise<"aborted">; dispose(): void } {
  if (!signal) return { promise: new Promise(() => {}), dispose: () => {} };
  let onAbort = () => {};
  const promise = new Promise<"aborted">((resolve) => {
    onAbort = () => resolve("aborted");
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  return { promise, dispose: () => signal.removeEventListener("abort", onAbort) };
}

function throwIfAborted(signal: AbortSignal | undefined, name: string, engine: ImageEngine): void {
  if (signal?.aborted) throw abortedRun(name, engine);
}

function abortedRun(name: string, engine: ImageEngine): BottleError {
  return abortedError(`the run of the bottle ${name}`, { backend: engine.flavor.name });
}
