/**
 * One run's session with the gateway: the CLI's configuration line in, the run's services up in the
 * run's folder, `ready`, denials and `closed` out (protocol.ts), until the run ends. A gateway of the
 * run's own (main.ts) holds one session on its stdin and stdout; a warm gateway (warm.ts) holds one
 * per run, each on a connection that the CLI makes through attach.ts.
 *
 * The session ends when the CLI's side ends (the CLI closed it, or died, which closes it too), when
 * the bottle's relay connects to the run's end socket (its command has ended), or when the gateway is
 * stopped from outside (`stop("signal")`). In a gateway of the run's own, the services' code
 * (serve.ts, most of the program) loads only once the configuration is in: a run that ends while the
 * gateway is still starting (a short command) should not wait for services nobody used. A warm
 * gateway has it loaded before its runs come (loadServices).
 */
import { chmod, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { BottleError } from "@claude-bottle/core/errors";
import { endSocket } from "./layout.js";
import type { GatewayMessage, GatewayStop } from "./protocol.js";
import type { RunningGateway } from "./serve.js";

export interface SessionIo {
  /** The CLI's side: the configuration line, then nothing; its end stops the session. */
  input: Readable;
  /** Send one line to the CLI (a message or a denial, as JSON). */
  send(line: string): void;
  /** The run's folder, where its sockets, `ready` marker and end socket go. */
  dir: string;
  /** The configuration line, when the caller has read it already (a warm gateway reads the run's id first). */
  firstLine?: string;
  /**
   * Remove `dir` when the session ends, before it says `closed` (a warm gateway's run folder): once
   * the CLI reads `closed` it may go at once, and nothing of the run may outlast it.
   */
  removeDir?: boolean;
}

export interface Session {
  /** Resolves with the exit code a gateway of its own would give (0, or 1 if it could not start). */
  done: Promise<number>;
  /** Stop the session (a signal to the gateway): its services close, and it says `closed`. */
  stop(why: GatewayStop): void;
}

/** The first line on `input`. Resolves undefined if `input` ends before one arrives. */
export function firstLineOf(input: Readable): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buffered = "";
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      const end = buffered.indexOf("\n");
      if (end < 0) return;
      done(buffered.slice(0, end));
    };
    const onEnd = () => done(undefined);
    const done = (line: string | undefined) => {
      input.off("data", onData);
      input.off("end", onEnd);
      input.off("close", onEnd);
      resolve(line);
    };
    input.on("data", onData);
    input.on("end", onEnd);
    input.on("close", onEnd);
  });
}

/**
 * The run's end socket (layout.ts's `endSocket`): any connection means "the command has ended". Made
 * first of all, before the services load, so that even a command that ends while the gateway is
 * still starting stops it at once. A failure to make it only costs time: the CLI ends the session
 * once the bottle is gone.
 */
async function listenForEnd(dir: string, onEnded: () => void): Promise<Server> {
  const path = join(dir, endSocket);
  await rm(path, { force: true });
  const server = createServer((inbound) => {
    inbound.destroy();
    onEnded();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  server.unref();
  // The bottle runs as the user's id, not the gateway's; the socket must let it connect.
  await chmod(path, 0o666);
  return server;
}

let services: Promise<typeof import("./serve.js")> | undefined;

/**
 * The services' code (serve.ts), loaded once per process: about 45 ms and 55 ms of CPU. A file of its
 * own beside this one (tsdown.config.ts), named at run time so that the bundler leaves it there. A
 * gateway of the run's own loads it once the configuration is in; a warm gateway loads it when it
 * starts, so that its first run does not pay for it while its bottle starts beside it.
 */
export function loadServices(): Promise<typeof import("./serve.js")> {
  services ??= import(new URL("./serve.mjs", import.meta.url).href);
  return services;
}

export function openSession(io: SessionIo): Session {
  const say = (message: GatewayMessage) => io.send(JSON.stringify(message));
  // The CLI may end the session at any moment, even while the services start (a bottle that failed
  // at once, or a command that was done at once): remember it from the start, so that the session
  // never waits for an end that already came. Why it stops goes with "closed": the CLI counts only
  // `ended` and its own `stdin` as a stop it wanted; `signal` (the gateway stopped from outside)
  // fails the run, whose bottle has no way out.
  let ended: GatewayStop | undefined;
  let onEnd = () => {};
  const ending = (why: GatewayStop) => {
    ended ??= why;
    onEnd();
  };
  io.input.on("end", () => ending("stdin"));
  io.input.on("close", () => ending("stdin"));
  io.input.on("error", () => ending("stdin"));
  // A warm gateway reads the first line before the session exists: the end may have come meanwhile.
  if (io.input.readableEnded || io.input.destroyed) ending("stdin");

  const run = async (): Promise<number> => {
    const listening = listenForEnd(io.dir, () => ending("ended")).catch(() => undefined);
    // What remains of the run in its folder goes first; then the CLI hears why the session ended.
    const finish = async (message: GatewayMessage) => {
      await listening.then((server) => server?.close());
      if (io.removeDir) await rm(io.dir, { recursive: true, force: true }).catch(() => undefined);
      say(message);
    };
    const line = io.firstLine ?? (await firstLineOf(io.input));
    if (line === undefined || ended) {
      // Stopped before anything started: nothing reached the services, nothing to report.
      await finish({ gateway: "closed", deniedHosts: [], why: ended ?? "stdin" });
      return 0;
    }
    io.input.resume();
    const endedFirst = new Promise<"ended">((resolve) => {
      onEnd = () => resolve("ended");
    });
    const starting = listening
      .then(loadServices)
      .then(({ serve }) => serve(line, { dir: io.dir, send: io.send }));
    let running: RunningGateway;
    try {
      const first = await Promise.race([starting, endedFirst]);
      if (first === "ended") {
        // Over before the services were up; close them if they come up after all.
        starting.then(
          (late) => closeRunning(late),
          () => undefined,
        );
        await finish({ gateway: "closed", deniedHosts: [], why: ended ?? "stdin" });
        return 0;
      }
      running = first;
    } catch (error) {
      const bottle = BottleError.is(error) ? error : undefined;
      // Messages here name addresses and paths, never the credential (core redacts its own).
      await finish({
        gateway: "failed",
        message:
          bottle?.message ??
          `the gateway could not start: ${error instanceof Error ? error.message : String(error)}`,
        ...(bottle?.hint && { hint: bottle.hint }),
      });
      return 1;
    }
    say({ gateway: "ready" });
    await new Promise<void>((resolve) => {
      onEnd = resolve;
      if (ended) resolve();
    });
    await closeRunning(running);
    await finish({ gateway: "closed", deniedHosts: running.services.deniedHosts(), why: ended ?? "stdin" });
    return 0;
  };
  return { done: run(), stop: ending };
}

async function closeRunning(running: RunningGateway): Promise<void> {
  for (const server of running.servers) server.close();
  await running.services.close();
}
