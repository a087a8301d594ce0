/**
 * A project's warm gateway on a container engine: one gateway container per project (and per
 * gateway image and engine setup), kept between runs, that each run attaches to with `exec` instead
 * of starting a gateway container of its own. Starting and removing a container with a network costs
 * about 400 ms on every run, and is most of what a warm `claude-bottle run` adds to the engine's own
 * `run`; an `exec` costs about 50 ms and runs beside the bottle's start.
 *
 * What the gateway keeps between runs is its code: every run brings its own credential, placeholder
 * and policy over the exec's stdin, gets services of its own in a folder of its own (the gateway
 * package's warm.ts), and takes them away when it ends. The gateway stops once no run has used it for
 * its idle time, and `claude-bottle ps` lists it and `claude-bottle stop` removes it (bottles.ts).
 *
 * Runs that publish ports or reach a loopback `anthropic.baseUrl` keep a gateway of their own: the
 * first needs ports published on the gateway's container when it is created, and both need the
 * gateway up and checked before their command starts (gateway-container.ts).
 */
import { createHash, randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { PassThrough } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { bottleLabels, type RunSpec } from "@claude-bottle/core";
import { meetingDir } from "@claude-bottle/gateway";
import type { ResultPromise } from "execa";
import { z } from "zod";
import { type EngineArgs, gatewayContainerOptions } from "./bottle-run-args.js";
import { engineFailure } from "./engine-output.js";
import { gatewayProgramsDir } from "./gateway-image.js";
import type { ImageEngine } from "./image-engine.js";

/** How long a project's gateway stays once its last run has ended, unless configured. */
export const defaultWarmGatewayMinutes = 15;

/** The setting of the container backends (`backends.docker`, `backends.podman`) for the warm gateway. */
export const warmGatewayOptionsShape = {
  // Fractions are fine (0.5: half a minute); the gateway's timer takes milliseconds.
  warmGatewayMinutes: z
    .number()
    .min(0)
    .max(24 * 60)
    .default(defaultWarmGatewayMinutes)
    .describe(
      "Keep each project's gateway running between runs, and stop it after this many minutes without one; 0 starts a gateway for every run and removes it with the run",
    ),
};

/** Names of warm gateways (their containers and volumes): the prefix, then a hash of what they are. */
export const warmGatewayPrefix = "claude-bottle-gateway-";

/** The label a warm gateway carries: how many idle minutes it stops after. */
export const warmGatewayLabel = "dev.claude-bottle.warm-gateway";

/** Where attach.ts is in the gateway image. */
const attachProgram = `${gatewayProgramsDir}/attach.mjs`;

/** attach.ts's exit code when the gateway takes no runs (stopping, or not listening yet). */
const takesNoRuns = 75;

export interface WarmGateway {
  /** The container's name, which is also its volume's. */
  name: string;
  /** This run's id: its folder in the gateway, given to the gateway and to the relay. */
  runId: string;
  /** `run` arguments that start the gateway when there is none. */
  runArgs: string[];
}

export interface WarmGatewayInput {
  spec: RunSpec;
  /** The gateway image (its tag, which is a hash of its content). */
  image: string;
  /** Extra `name → address` entries for the gateway's /etc/hosts. */
  hosts?: Readonly<Record<string, string>> | undefined;
  /** Stop after this many minutes without a run. */
  idleMinutes: number;
}

/**
 * The warm gateway for `spec`'s project, and a new run id. Its name is a hash of everything its
 * container is made of (the project's folder among its labels, the image, the hosts entries, the
 * engine's options): a project gets a new gateway when claude-bottle or its settings change, and
 * two projects never share one.
 */
export function warmGatewayFor(engine: EngineArgs, input: WarmGatewayInput): WarmGateway {
  const { flavor } = engine;
  const labels = {
    [bottleLabels.role]: "gateway",
    [bottleLabels.backend]: flavor.name,
    [bottleLabels.workspace]: input.spec.workspace,
    [warmGatewayLabel]: String(input.idleMinutes),
  };
  // `--rm`: a gateway that stops on its own (idle) goes with its container.
  const options = [
    ...engine.runOptions,
    "--detach",
    "--rm",
    "--pull",
    "never",
    ...gatewayContainerOptions(engine, input.hosts, labels),
  ];
  const name = `${warmGatewayPrefix}${createHash("sha256")
    .update(JSON.stringify([options, input.image]))
    .digest("hex")
    .slice(0, 16)}`;
  const runArgs = [
    "run",
    ...options,
    "--name",
    name,
    "--mount",
    `type=volume,source=${name},target=${meetingDir}`,
    input.image,
    "warm",
    String(input.idleMinutes),
  ];
  return { name, runId: randomBytes(16).toString("base64url"), runArgs };
}

/**
 * A run's gateway as gateway-container.ts follows it, whichever kind: its lines out, its stderr,
 * its end, and a way to end its input.
 */
export interface GatewayProcess {
  stdout: NodeJS.ReadableStream;
  stderr: NodeJS.ReadableStream;
  /**
   * Resolves once the gateway's side is gone: with its exit code when there is one, with `error`
   * when the gateway could not even be started.
   */
  exited: Promise<{ exitCode?: number | undefined; error?: unknown }>;
  /** End the gateway's input: the run is over (the CLI's way to stop it). */
  endInput(): void;
  kill(): void;
  /**
   * Stop waiting for it, once it has said `closed`: a warm gateway has then removed all of the run
   * (the gateway package's session.ts), and its `exec` exits by itself some 10 ms later, which this
   * process need not wait for. Absent for a gateway of the run's own, whose container must be gone.
   */
  letGo?(): void;
}

/**
 * One run's attachment to a warm gateway. A gateway that is not there (never started, stopped after
 * being idle, or stopping just now) is started, and the run attaches again; the bottle does not
 * wait for any of it (its relay holds connections until the run's `ready` marker is there).
 */
export function attachWarmGateway(
  engine: ImageEngine,
  warm: WarmGateway,
  configLine: string,
): GatewayProcess {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let current: ResultPromise | undefined;
  let inputEnded = false;
  const attempt = async (): Promise<{ exitCode?: number | undefined; error?: unknown }> => {
    for (let tries = 1; ; tries++) {
      // Node must not be given `exec`'s stdin until it exists, so the line goes in here.
      const child = engine.spawn(["exec", "--interactive", warm.name, "node", attachProgram], {
        stdin: "pipe",
        stdout: "pipe",
        stderr: "pipe",
        reject: false,
        buffer: false,
      });
      current = child;
      child.stdin!.on("error", () => {});
      child.stdin!.write(configLine);
      if (inputEnded) child.stdin!.end();
      let said = false;
      child.stdout!.on("data", (chunk: Buffer) => {
        said = true;
        stdout.write(chunk);
      });
      const errors: Buffer[] = [];
      child.stderr!.on("data", (chunk: Buffer) => errors.push(chunk));
      const result = await child;
      const detail = Buffer.concat(errors).toString("utf8");
      const failure = engineFailure(detail);
      const absent =
        !said &&
        (result.exitCode === takesNoRuns || failure === "no-such-container" || failure === "not-running");
      if (!absent || inputEnded || tries >= 3) {
        stderr.end(detail);
        stdout.end();
        return { exitCode: typeof result.exitCode === "number" ? result.exitCode : undefined };
      }
      try {
        await startWarmGateway(engine, warm);
      } catch (error) {
        stderr.end();
        stdout.end();
        return { error };
      }
    }
  };
  // After the bottle's `run` has started (that is the same turn of the event loop, run-bottle.ts): the
  // bottle's start is what the user waits for, and the attachment only has to be there before its
  // command's first connection, which the relay holds until then.
  const exited = new Promise((resolve) => setImmediate(resolve)).then(attempt);
  return {
    stdout,
    stderr,
    exited,
    endInput: () => {
      inputEnded = true;
      current?.stdin?.end();
    },
    kill: () => current?.kill("SIGKILL"),
    letGo: () => {
      // A child's pipes are sockets, each keeping this process alive like the child itself.
      current?.unref();
      for (const pipe of [current?.stdout, current?.stderr]) (pipe as Socket | null | undefined)?.unref();
    },
  };
}

/**
 * Start the warm gateway's container. Another run of the project may be starting it at the same
 * moment, or the engine may still be removing the last one (it stopped after being idle): the name
 * being taken is fine either way, the next attach finds out which.
 */
async function startWarmGateway(engine: ImageEngine, warm: WarmGateway): Promise<void> {
  for (let tries = 1; ; tries++) {
    const result = await engine.spawn(warm.runArgs, { stdin: "ignore", reject: false });
    if (result.exitCode === 0) {
      // Only here, when a gateway starts (rarely): what earlier ones left needs no sweeping more often.
      await sweepIdleGatewayVolumes(engine, warm.name);
      return;
    }
    const failure = engineFailure(String(result.stderr ?? ""));
    if (failure === "name-in-use") {
      await sleep(100);
      return;
    }
    // The bottle's own `run` made the volume at the same moment (an engine that races on it).
    if (failure === "volume-exists" && tries < 3) continue;
    throw engine.explain(result, "RUN_FAILED", `starting the project's gateway ${warm.name}`);
  }
}

/** Remove a warm gateway and its volume (`stop`, and tests' clean-up); runs still attached fail. */
export async function removeWarmGateway(engine: ImageEngine, name: string): Promise<void> {
  await engine.removeContainer(name);
  await engine.removeVolume(name);
}

/**
 * Remove the volumes of warm gateways that are gone (stopped after being idle, with an older
 * claude-bottle or other settings), except `keep`. One that a gateway or a bottle still mounts is
 * in use, and the engine refuses to remove it; so this can never take a running gateway's volume.
 */
async function sweepIdleGatewayVolumes(engine: ImageEngine, keep: string): Promise<void> {
  const names = (await engine.volumeNames().catch(() => [])).filter(
    (name) => name.startsWith(warmGatewayPrefix) && name !== keep,
  );
  if (names.length > 0) await engine.spawn(["volume", "rm", ...names], { stdin: "ignore", reject: false });
}
