/**
 * The gateway program: runs in a container of its own beside a bottle that has no network, as
 * `docker run -i --rm`, started and fed by the CLI (see protocol.ts for what goes over stdin/stdout).
 *
 * It starts core's host services (serve.ts: the API forwarder with the real credential and, in
 * `allowlist` mode, the egress proxy) where nothing outside this container reaches them, and offers
 * each to the bottle as a unix socket in the volume the two share. The gateway's network is an
 * ordinary one: whatever leaves the bottle leaves from here, after the proxy's policy.
 *
 * Why unix sockets in a volume rather than a network between the two: the bottle then has no
 * network interface but loopback, so there is no address of any host, engine or container it could
 * even try; no network has to be created per run (the largest cost of a warm run before), no
 * firewall rules are needed on any host, and it works the same wherever the engine runs (a VM on
 * Docker Desktop, another network namespace, a remote host).
 *
 * This file is kept small and loads the services' code (most of the program) only once the
 * configuration is in: the bottle does not wait for the gateway (see relay.ts), and a run that ends
 * while the gateway is still starting (a short command) should not wait for services nobody used.
 */
import { chmod, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { BottleError } from "@claude-bottle/core/errors";
import { endSocket, meetingDir } from "./layout.js";
import type { GatewayMessage, GatewayStop } from "./protocol.js";
import type { RunningGateway } from "./serve.js";

function say(message: GatewayMessage): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** The first line on stdin: the configuration. Resolves undefined if stdin ends before one arrives. */
function firstLine(): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buffered = "";
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      const end = buffered.indexOf("\n");
      if (end < 0) return;
      process.stdin.off("data", onData);
      process.stdin.off("end", onEnd);
      resolve(buffered.slice(0, end));
    };
    const onEnd = () => resolve(undefined);
    process.stdin.on("data", onData);
    process.stdin.on("end", onEnd);
  });
}

/**
 * The socket the relay connects to when the bottle's command has ended (layout.ts's `endSocket`):
 * any connection means "done". Made first of all, before the services load, so that even a command
 * that ends while the gateway is still starting stops it at once. A failure to make it only costs
 * time: the CLI closes stdin once the bottle is gone.
 */
async function listenForEnd(onEnded: () => void): Promise<void> {
  const path = join(meetingDir, endSocket);
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
}

async function main(): Promise<void> {
  // The CLI may close stdin at any moment, even while the services start (a bottle that failed at
  // once, or a command that was done at once): remember it from the start, so the gateway never
  // waits for an end that already came.
  // Why it stops, said with "closed": the CLI counts only `ended` and its own `stdin` as a stop it
  // wanted; `signal` (its container stopped from outside) fails the run, whose bottle has no way out.
  let ended: GatewayStop | undefined;
  let onEnd = () => {};
  const ending = (why: GatewayStop) => () => {
    ended ??= why;
    onEnd();
  };
  process.stdin.on("end", ending("stdin"));
  process.stdin.on("close", ending("stdin"));
  process.on("SIGTERM", ending("signal"));
  process.on("SIGINT", ending("signal"));

  // The bottle's command has ended (the relay said so): stop as when the CLI closes stdin.
  const listening = listenForEnd(ending("ended")).catch(() => undefined);
  const line = await firstLine();
  if (line === undefined || ended) {
    // Stopped before anything started (stdin closed, or the bottle already said it is done): exit
    // now rather than wait for a stdin that may stay open.
    say({ gateway: "closed", deniedHosts: [], why: ended ?? "stdin" });
    process.exit(0);
  }
  process.stdin.resume();
  const endedFirst = new Promise<"ended">((resolve) => {
    onEnd = () => resolve("ended");
  });
  // A file of its own beside this one (tsdown.config.ts), named at run time so that the bundler
  // leaves it there: its imports (node:http, the proxy's library, zod) load only now.
  const serveFile = new URL("./serve.mjs", import.meta.url).href;
  const starting = listening
    .then(() => import(serveFile) as Promise<typeof import("./serve.js")>)
    .then(({ serve }) => serve(line));
  starting.catch(() => {});
  let running: RunningGateway;
  try {
    const first = await Promise.race([starting, endedFirst]);
    if (first === "ended") {
      // The run is over before the services were up: nothing reached them, nothing to report.
      say({ gateway: "closed", deniedHosts: [], why: ended ?? "stdin" });
      process.exit(0);
    }
    running = first;
  } catch (error) {
    const bottle = BottleError.is(error) ? error : undefined;
    // Messages here name addresses and paths, never the credential (core redacts its own).
    say({
      gateway: "failed",
      message:
        bottle?.message ??
        `the gateway could not start: ${error instanceof Error ? error.message : String(error)}`,
      ...(bottle?.hint && { hint: bottle.hint }),
    });
    process.exitCode = 1;
    process.exit();
  }
  say({ gateway: "ready" });
  let stopping = false;
  onEnd = async () => {
    if (stopping) return;
    stopping = true;
    for (const server of running.servers) server.close();
    await running.services.close();
    say({ gateway: "closed", deniedHosts: running.services.deniedHosts(), why: ended ?? "stdin" });
    process.exit(0);
  };
  if (ended) onEnd();
}

await main();
