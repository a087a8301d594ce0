/**
 * The gateway beside each bottle: a container of the run's own, started attached (`docker run -i
 * --rm`), or the project's warm gateway (warm-gateway.ts), attached to with `exec -i`; either is fed
 * the run's configuration (with the real credential) over stdin, and read line by line on stdout.
 * See @claude-bottle/gateway for the program itself and why the bottle reaches it through unix
 * sockets.
 *
 * A gateway of the run's own dies with the run (a warm one ends only the run's session): the relay in the bottle tells it when the command has ended, the
 * CLI closes its stdin when the bottle is gone, and a CLI that is killed closes it too (the pipe's
 * end goes with the process), so the gateway stops and the engine removes it (`--rm`) even then.
 */
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import {
  BottleError,
  bottleLabels,
  credentialNames,
  isLoopbackHost,
  type RunSpec,
} from "@claude-bottle/core";
import {
  chooseCredential,
  type GatewayConfigInput,
  hostAddresses,
  meetingDir,
  newPlaceholderCredential,
  outboundDir,
  type RelayConfig,
  readGatewayLine,
  relayPorts,
  serviceEnv,
} from "@claude-bottle/gateway";
import { type Denial, DenialLog } from "@claude-bottle/gateway/services";
import type { ResultPromise } from "execa";
import { bottleLabelsFor, type EngineArgs, gatewayContainerOptions } from "./bottle-run-args.js";
import type { EngineFlavor } from "./engine-flavor.js";
import { engineFailure } from "./engine-output.js";
import type { ImageEngine } from "./image-engine.js";
import { attachWarmGateway, type GatewayProcess, type WarmGateway } from "./warm-gateway.js";

/**
 * Container and volume names of a bottle's gateway: `volume` is the one the bottle mounts read-only,
 * `outVolume` the one for published ports that it mounts read-write (made only with `--publish`).
 */
export function gatewayNames(bottle: string): { container: string; volume: string; outVolume: string } {
  return { container: `${bottle}-gateway`, volume: `${bottle}-gateway`, outVolume: `${bottle}-gateway-out` };
}

/**
 * Refuse ports the bottle's relay needs for itself: an allowed host port and a published port are
 * both served on the bottle's loopback, where the relay already listens for the API and the proxy.
 */
export function refuseReservedPorts(spec: RunSpec, flavor: EngineFlavor): void {
  const reserved = new Set<number>(Object.values(relayPorts));
  const ports = [
    ...(spec.network.hostPorts ?? []).map((port) => ({ port, what: `--allow-host-port ${port}` })),
    ...(spec.network.publish ?? []).map((entry) => ({
      port: entry.port,
      what: `--publish ${entry.port}:${entry.hostPort}`,
    })),
  ];
  for (const { port, what } of ports) {
    if (reserved.has(port))
      throw new BottleError(
        "INVALID_CONFIG",
        `${what}: port ${port} is used inside the bottle by claude-bottle's own relay`,
        { backend: flavor.name, hint: `use another port than ${[...reserved].join(" or ")}` },
      );
  }
  const published = new Set((spec.network.publish ?? []).map((entry) => entry.port));
  for (const port of spec.network.hostPorts ?? []) {
    if (published.has(port))
      throw new BottleError(
        "INVALID_CONFIG",
        `port ${port} is both an allowed host port and a published port of the bottle`,
        { backend: flavor.name, hint: "inside the bottle, localhost:PORT can be only one of the two" },
      );
  }
}

export interface GatewayRunInput {
  spec: RunSpec;
  /** The placeholder the bottle gets in place of the credential (bottleServices). */
  placeholder?: string | undefined;
  /** The gateway image (ensureGatewayImage). */
  image: string;
  /** Extra `name → address` entries for the gateway's /etc/hosts (`--add-host`). */
  hosts?: Readonly<Record<string, string>>;
  /** Attach to the project's warm gateway (warm-gateway.ts) rather than start one for this run. */
  warm?: WarmGateway | undefined;
}

/** `run` arguments (without the CLI itself) for the gateway. */
export function gatewayRunArgs(engine: EngineArgs, input: GatewayRunInput): string[] {
  const { spec } = input;
  const { flavor } = engine;
  const { container, volume } = gatewayNames(spec.name);
  const labels = {
    ...bottleLabelsFor(spec, flavor),
    [bottleLabels.role]: "gateway",
    [gatewayBottleLabel]: spec.name,
  };
  const args = ["run", ...engine.runOptions, "--interactive", "--rm", "--name", container, "--pull", "never"];
  args.push(...gatewayContainerOptions(engine, input.hosts, labels));
  args.push("--mount", `type=volume,source=${volume},target=${meetingDir}`);
  const publish = spec.network.publish ?? [];
  if (publish.length > 0) {
    args.push("--mount", `type=volume,source=${gatewayNames(spec.name).outVolume},target=${outboundDir}`);
    // On this machine's loopback only: nothing else on the network reaches the bottle's servers.
    for (const { hostPort } of publish) args.push("--publish", `127.0.0.1:${hostPort}:${hostPort}`);
  }
  args.push(input.image);
  return args;
}

/** The label that names a gateway's bottle (its role label says "gateway"). */
export const gatewayBottleLabel = "dev.claude-bottle.bottle";

/**
 * What the gateway is told: the run's credentials (the API ones only, unless they pass through) and
 * policy, the CLI host's addresses for the proxy to refuse, and where the API is as the gateway sees
 * it. A loopback `anthropic.baseUrl` means this machine; from a container the engine's machine is
 * the flavour's host name (`host.docker.internal`: Docker Desktop provides it, `--add-host
 * …:host-gateway` elsewhere; `host.containers.internal`, which Podman provides), so the URL is
 * rewritten to it and the gateway checks at start that it answers there.
 */
export function gatewayConfigFor(
  spec: RunSpec,
  flavor: EngineFlavor,
  placeholder?: string | undefined,
): GatewayConfigInput {
  const engineHostName = flavor.hostName;
  const passthrough = spec.passthroughCredentials ?? false;
  const secrets = passthrough
    ? {}
    : Object.fromEntries(Object.entries(spec.secrets).filter(([name]) => isForwarded(name)));
  const config: GatewayConfigInput = {
    secrets,
    passthroughCredentials: passthrough,
    ...(placeholder && { placeholder }),
    network: spec.network,
    cliHostAddresses: hostAddresses(),
    engineHost: engineHostName,
  };
  if (spec.anthropicBaseUrl !== undefined) {
    const url = new URL(spec.anthropicBaseUrl);
    if (isLoopbackHost(url.hostname)) {
      const original = spec.anthropicBaseUrl;
      url.hostname = engineHostName;
      config.anthropicBaseUrl = url.toString();
      config.probeUpstream = true;
      config.upstreamHint =
        `anthropic.baseUrl ${original} is on this machine's loopback; the bottle's gateway reaches this machine as ` +
        `${engineHostName}:${url.port || (url.protocol === "https:" ? 443 : 80)}. Make the service listen there too ` +
        `(on Linux: ${flavor.hostListenHint}), or set anthropic.baseUrl to an address the ${flavor.displayName} engine's containers reach`;
    } else {
      config.anthropicBaseUrl = spec.anthropicBaseUrl;
    }
  }
  return config;
}

/**
 * What the bottle is given for reaching its gateway, worked out here before the gateway starts so
 * that the bottle's command need not wait for it: the environment pointing at the relay's ports
 * (`env`), the placeholder for the credential the forwarder stands in for (`secretEnv`, which goes in
 * as a credential does, its value never on a command line; `placeholder` for the gateway), and the
 * relay's configuration.
 */
export function bottleServices(spec: RunSpec): {
  env: Record<string, string>;
  secretEnv: Record<string, string>;
  placeholder: string | undefined;
  relay: RelayConfig;
} {
  const mode = spec.network.mode ?? "allowlist";
  const chosen = spec.passthroughCredentials ? undefined : chooseCredential(spec.secrets);
  const placeholder = chosen ? newPlaceholderCredential() : undefined;
  const all = serviceEnv({
    apiUrl: `http://127.0.0.1:${relayPorts.api}`,
    proxyUrl: mode === "allowlist" ? `http://127.0.0.1:${relayPorts.proxy}` : undefined,
    mode,
    credential: chosen && placeholder ? { name: chosen.name, placeholder } : undefined,
    bindHost: "127.0.0.1",
  });
  const secretEnv: Record<string, string> = {};
  if (chosen && placeholder) {
    secretEnv[chosen.name] = placeholder;
    delete all[chosen.name];
  }
  const publish = (spec.network.publish ?? []).map((entry) => entry.port);
  const loopbackApi =
    spec.anthropicBaseUrl !== undefined && isLoopbackHost(new URL(spec.anthropicBaseUrl).hostname);
  return {
    env: all,
    secretEnv,
    placeholder,
    relay: {
      services: mode === "allowlist" ? ["api", "proxy"] : ["api"],
      hostPorts: [...(spec.network.hostPorts ?? [])],
      publish,
      // The gateway can still refuse these runs after the bottle started; their command waits.
      waitForGateway: publish.length > 0 || loopbackApi,
    },
  };
}

/** Secrets that still go into the bottle itself: all with passthrough, else those the gateway cannot stand in for. */
export function bottleSecrets(spec: RunSpec): Record<string, string> {
  if (spec.passthroughCredentials) return { ...spec.secrets };
  return Object.fromEntries(Object.entries(spec.secrets).filter(([name]) => !isForwarded(name)));
}

/** Whether the gateway's forwarder stands in for this credential (it then never enters the bottle). */
function isForwarded(name: string): boolean {
  return (credentialNames as readonly string[]).includes(name);
}

export interface RunningGateway {
  /**
   * Rejects with an explanation once the gateway fails, or stops before `stop` was called without
   * having said "closed" (which it says when the bottle told it the command ended). The run does not
   * wait for it to be ready: the relay inside holds connections until then (see run-bottle.ts).
   */
  readonly failed: Promise<never>;
  /** Stop it (close its stdin) and wait until it and its volume are gone; resolves with the refused hosts. */
  stop(): Promise<string[]>;
}

/** Most hosts the run's summary names when the gateway could not give its own. */
const maxDeniedHosts = 50;

/**
 * Start the gateway for `spec`: a container of the run's own (`run -i`), or, with `input.warm`, the
 * project's warm gateway (warm-gateway.ts), attached to with `exec -i`. Either way the configuration
 * line goes in on stdin and the gateway's output is followed line by line. Denials are appended to
 * `spec.deniedLogPath` as they arrive (opened first: a log that cannot be written fails the start,
 * before anything runs).
 */
export async function startGateway(engine: ImageEngine, input: GatewayRunInput): Promise<RunningGateway> {
  const { spec, warm } = input;
  const { flavor } = engine;
  const log = spec.deniedLogPath ? openDenialLog(spec.deniedLogPath, flavor) : undefined;
  const config = {
    ...gatewayConfigFor(spec, flavor, input.placeholder),
    ...(warm && { runId: warm.runId }),
  };
  const configLine = `${JSON.stringify(config)}\n`;
  const gateway = warm ? attachWarmGateway(engine, warm, configLine) : ownGateway(engine, input, configLine);
  const gatewayName = warm?.name ?? gatewayNames(spec.name).container;

  const denied: string[] = [];
  const stderr: string[] = [];
  let closedHosts: string[] | undefined;
  let stoppedFromOutside = false;
  let failure: BottleError | undefined;
  let rejectFailed!: (error: BottleError) => void;
  const failed = new Promise<never>((_, reject) => {
    rejectFailed = reject;
  });
  failed.catch(() => {});
  let stopping = false;

  const fail = (error: BottleError) => {
    failure ??= error;
    rejectFailed(failure);
  };
  createInterface({ input: gateway.stderr }).on("line", (line) => {
    stderr.push(line);
    if (stderr.length > 20) stderr.shift();
  });
  createInterface({ input: gateway.stdout }).on("line", (text) => {
    const line = readGatewayLine(text);
    if (line.kind === "denial") {
      log?.write(`${JSON.stringify(line.denial satisfies Denial)}\n`);
      // The gateway's own summary (bounded) comes when it closes; this list only stands in for it
      // when the gateway died first, so it is bounded too.
      const counted = line.denial.reason !== "malformed" && line.denial.reason !== "limit";
      if (counted && denied.length < maxDeniedHosts && !denied.includes(line.denial.host))
        denied.push(line.denial.host);
    } else if (line.kind === "message") {
      const message = line.message;
      if (message.gateway === "closed") {
        closedHosts = message.deniedHosts;
        // Stopped from outside (its container stopped or removed): not what the run asked for.
        if (message.why === "signal" && !stopping) stoppedFromOutside = true;
      } else if (message.gateway === "failed")
        fail(
          new BottleError("RUN_FAILED", message.message, {
            backend: flavor.name,
            ...(message.hint && { hint: message.hint }),
          }),
        );
    }
  });
  const exited = gateway.exited.then((result) => {
    if (result.error !== undefined) {
      fail(
        BottleError.is(result.error)
          ? result.error
          : new BottleError("RUN_FAILED", `the project's gateway ${gatewayName} could not start`, {
              backend: flavor.name,
              cause: result.error,
            }),
      );
      return;
    }
    // Stopped on purpose: by `stop`, or because the bottle's command ended (the gateway said
    // "closed" first; the bottle's own run ends the run).
    if (stopping || (closedHosts !== undefined && !stoppedFromOutside)) return;
    const detail = stderr.join("\n").trim();
    const taken = portInUse(detail, spec);
    if (taken !== undefined) {
      fail(
        new BottleError(
          "RUN_FAILED",
          `port ${taken} on this machine is already in use, so --publish cannot use it`,
          {
            backend: flavor.name,
            hint: `stop what listens on 127.0.0.1:${taken}, or publish on another port: --publish PORT:HOSTPORT`,
          },
        ),
      );
      return;
    }
    fail(
      new BottleError(
        "RUN_FAILED",
        `the bottle's gateway ${gatewayName} stopped unexpectedly` +
          (typeof result.exitCode === "number" ? ` (exit ${result.exitCode})` : "") +
          (detail ? `:\n${detail}` : ""),
        {
          backend: flavor.name,
          hint:
            result.exitCode === 125 && !warm
              ? `${flavor.displayName} could not start the gateway; \`${engine.binary} info\` shows whether the engine is healthy`
              : "the bottle has no way out without its gateway; run again, and report it if it keeps happening",
        },
      ),
    );
  });

  const stop = async (): Promise<string[]> => {
    stopping = true;
    gateway.endInput();
    if (closedHosts !== undefined && gateway.letGo) {
      gateway.letGo();
      log?.close();
      return closedHosts;
    }
    // A timer that is cleared once the gateway is gone: a pending one would keep the CLI alive.
    const patience = new AbortController();
    const done = await Promise.race([
      exited.then(() => true),
      sleep(10_000, false, { signal: patience.signal }).catch(() => false),
    ]);
    patience.abort();
    const names = gatewayNames(spec.name);
    if (!done) {
      // A warm gateway stays for the project's next run; only this run's attachment goes.
      if (!warm) await engine.removeContainer(names.container).catch(() => undefined);
      gateway.kill();
    }
    log?.close();
    if (!warm) {
      await engine.removeVolume(names.volume);
      // The out volume exists only when the gateway mounted it (`--publish`): no call for one never made.
      if ((spec.network.publish ?? []).length > 0) await engine.removeVolume(names.outVolume);
    }
    return closedHosts ?? denied;
  };
  return { failed, stop };
}

/** A gateway container of the run's own, attached (`run -i --rm`): gone with the run. */
function ownGateway(engine: ImageEngine, input: GatewayRunInput, configLine: string): GatewayProcess {
  const child = engine.spawn(gatewayRunArgs(engine, input), {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    reject: false,
    buffer: false,
  });
  child.stdin!.on("error", () => {});
  child.stdin!.write(configLine);
  return {
    stdout: child.stdout!,
    stderr: child.stderr!,
    exited: (child as ResultPromise).then((result) => ({
      exitCode: typeof result.exitCode === "number" ? result.exitCode : undefined,
    })),
    endInput: () => child.stdin!.end(),
    kill: () => child.kill("SIGKILL"),
  };
}

/**
 * The published host port the engine could not bind, from the gateway's `run` errors ("Bind for
 * 127.0.0.1:8080 failed: port is already allocated", "listen tcp4 127.0.0.1:8080: bind: address
 * already in use"), or undefined if that is not why it failed.
 */
export function portInUse(detail: string, spec: RunSpec): number | undefined {
  if (engineFailure(detail) !== "port-in-use") return undefined;
  for (const { hostPort } of spec.network.publish ?? []) {
    if (new RegExp(`[:.]${hostPort}\\b`).test(detail)) return hostPort;
  }
  return undefined;
}

/** The run's denial log, bounded and rotated as core keeps it; one that can't be opened fails the start. */
function openDenialLog(path: string, flavor: EngineFlavor): DenialLog {
  try {
    return new DenialLog(path);
  } catch (error) {
    throw new BottleError("RUN_FAILED", `cannot write the denial log ${path}: ${(error as Error).message}`, {
      backend: flavor.name,
      hint: "check that its folder exists and is writable",
      cause: error,
    });
  }
}
