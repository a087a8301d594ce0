/**
 * One bottled run on Docker: a network of its own, the host services on that network's gateway,
 * then `docker run` attached to this process's terminal. Whatever happens (exit, error, abort) the
 * container, the network and the services are gone when `runBottle` settles.
 *
 * The network is internal unless the mode is `open` (see `dockerNetworkCreateArgs`), so the
 * services on its gateway are all the bottle reaches: the API forwarder, which holds the real
 * credential, and in `allowlist` mode the egress proxy, which enforces `spec.network`. The rest of
 * the host (anything else listening on its addresses) is kept out by host-firewall.ts, in every mode.
 */
import { setTimeout as sleep } from "node:timers/promises";
import {
  BottleError,
  type HostServices,
  type ImageEngine,
  preloadHostServices,
  type ResolveHost,
  type RunResult,
  type RunSpec,
  startHostServices,
} from "@claude-bottle/core";
import type { Result, ResultPromise } from "execa";
import { type BottleNetwork, bottleNetworkOf, removeBottleNetwork } from "./docker-bottles.js";
import { dockerNetworkCreateArgs, dockerRunArgs } from "./docker-run-args.js";
import { guardHost, type HostFirewallOptions, type HostGuard, hostServicePorts } from "./host-firewall.js";

/** `docker run` exits 125 when Docker itself failed, before the command ran. */
const dockerRunFailed = 125;

export interface RunBottleOptions {
  signal?: AbortSignal;
  /** How the egress proxy resolves allowed names; default: the host's resolver. */
  resolveHost?: ResolveHost;
  /** How the bottle is fenced off from the host's other services (host-firewall.ts). */
  hostFirewall?: HostFirewallOptions;
}

export async function runBottle(
  engine: ImageEngine,
  image: string,
  spec: RunSpec,
  options: RunBottleOptions = {},
): Promise<RunResult> {
  const { signal } = options;
  throwIfAborted(signal, spec.name);
  const network = spec.name;
  const creating = engine.exec(
    dockerNetworkCreateArgs(spec, network),
    "RUN_FAILED",
    `creating the bottle's network ${network}`,
  );
  // The host services start right after the network exists: load their code while Docker creates
  // it. Only now, with `docker network create` started: loading blocks this thread for a while.
  preloadHostServices(spec.network);
  await creating;
  let services: HostServices | undefined;
  let guard: HostGuard | undefined;
  let outcome: { result: RunResult } | { error: unknown };
  try {
    throwIfAborted(signal, spec.name);
    const { id, gateway, options: networkOptions } = await inspectBottleNetwork(engine, network);
    services = await startServices(gateway, spec, options.resolveHost);
    // The bottle may reach the host services on the gateway and nothing else of the host's.
    const ports = hostServicePorts(services);
    guard = await guardHost(
      engine,
      { bottle: spec.name, networkId: id, networkOptions, gateway, ports, image },
      options.hostFirewall,
    );
    throwIfAborted(signal, spec.name);
    const args = dockerRunArgs({
      spec,
      image,
      network,
      serviceEnv: services.env,
      secretNames: Object.keys(services.secrets),
    });
    const exitCode = await runContainer(engine, args, services.secrets, spec, signal);
    const warnings = guard.warnings;
    outcome = {
      result: { exitCode, deniedHosts: services.deniedHosts(), ...(warnings.length > 0 && { warnings }) },
    };
  } catch (error) {
    outcome = { error };
  }
  // Clean up in order and always; the run's own error, if any, is the one reported.
  const cleanup: unknown[] = [];
  await guard?.close().catch((error: unknown) => cleanup.push(error));
  await services?.close().catch((error: unknown) => cleanup.push(error));
  await removeBottleNetwork(engine, network).catch((error: unknown) => cleanup.push(error));
  if ("error" in outcome) throw outcome.error;
  if (cleanup.length > 0) throw cleanup[0];
  return outcome.result;
}

/** The bottle's network as the run needs it; it must have an IPv4 gateway for the host services. */
async function inspectBottleNetwork(
  engine: ImageEngine,
  network: string,
): Promise<BottleNetwork & { gateway: string }> {
  const facts = bottleNetworkOf(await engine.inspect(network));
  if (!facts.gateway) {
    throw new BottleError("RUN_FAILED", `the network ${network} has no IPv4 gateway`, {
      backend: "docker",
      hint: "check Docker's default address pools (`default-address-pools` in daemon.json)",
    });
  }
  return { ...facts, gateway: facts.gateway };
}

async function startServices(
  gateway: string,
  spec: RunSpec,
  resolveHost: ResolveHost | undefined,
): Promise<HostServices> {
  try {
    return await startHostServices({
      bindHost: gateway,
      ...(spec.anthropicBaseUrl !== undefined && { anthropicBaseUrl: spec.anthropicBaseUrl }),
      secrets: spec.secrets,
      network: spec.network,
      ...(spec.passthroughCredentials !== undefined && {
        passthroughCredentials: spec.passthroughCredentials,
      }),
      ...(spec.deniedLogPath !== undefined && { deniedLogPath: spec.deniedLogPath }),
      ...(resolveHost && { resolve: resolveHost }),
    });
  } catch (error) {
    if (BottleError.is(error)) throw error;
    throw new BottleError("RUN_FAILED", `could not start the host services on ${gateway}: ${String(error)}`, {
      backend: "docker",
      hint: "the bottle reaches the host on its network's gateway; check that nothing else holds that address",
      cause: error,
    });
  }
}

/**
 * `docker run` with this process's stdio; resolves with the agent's exit code. Credentials that
 * still go in (passthrough, or ones the forwarder cannot stand in for) are in the CLI's environment
 * only (argv names them). On abort the container is force-removed and the CLI awaited before rejecting.
 */
async function runContainer(
  engine: ImageEngine,
  args: string[],
  secrets: Record<string, string>,
  spec: RunSpec,
  signal: AbortSignal | undefined,
): Promise<number> {
  const child = engine.spawn(args, {
    stdin: spec.tty || spec.stdin ? "inherit" : "ignore",
    stdout: "inherit",
    stderr: "inherit",
    env: { ...engine.env, ...secrets },
    reject: false,
  });
  const aborted = abortOf(signal);
  let result: Result | "aborted";
  try {
    result = await Promise.race([child, aborted.promise]);
  } finally {
    aborted.dispose();
  }
  if (result === "aborted" || signal?.aborted) {
    await removeUntilExited(engine, spec.name, child);
    throw abortedRun(spec.name);
  }
  if (typeof result.exitCode !== "number") {
    // The CLI did not run (not installed) or was killed by a signal; the container may remain.
    await engine.removeContainer(spec.name).catch(() => undefined);
    throw engine.explain(result, "RUN_FAILED", `running the bottle ${spec.name}`);
  }
  if (result.exitCode === dockerRunFailed) {
    throw new BottleError(
      "RUN_FAILED",
      `Docker could not start the bottle ${spec.name} (docker run exited 125)`,
      {
        backend: "docker",
        hint: "Docker printed the reason above; `docker info` shows whether the engine is healthy",
        cause: result,
      },
    );
  }
  return result.exitCode;
}

/**
 * Force-remove the container until the `docker run` child has exited, then once more. An abort can
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

function throwIfAborted(signal: AbortSignal | undefined, name: string): void {
  if (signal?.aborted) throw abortedRun(name);
}

function abortedRun(name: string): BottleError {
  return new BottleError(
    "ABORTED",
    `the bottle ${name} was stopped and removed because the run was cancelled`,
    {
      backend: "docker",
    },
  );
}
