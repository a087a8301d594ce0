/**
 * The relay: runs inside the bottle, which has no network but loopback. It listens on the bottle's
 * 127.0.0.1 at fixed ports and pipes each connection to the gateway's unix socket for that service,
 * then runs the bottle's command, and ends with its exit code. The command's environment
 * (ANTHROPIC_BASE_URL and the proxy variables pointing at those ports, the placeholder) is the
 * container's own: the CLI computes it (bottle-env.ts), so neither needs the gateway to be up.
 *
 * The bottle and its gateway start at once, and the command starts without waiting for the gateway
 * (unless `waitForGateway`): a connection that comes before the gateway has written its `ready`
 * marker is held until then. So the gateway's start-up overlaps the command's own (Claude Code takes
 * far longer to make its first request than the gateway takes to start).
 *
 * The CLI mounts this file (bundled) into the bottle at layout.ts's `relayPath` and runs it with
 * `node` (`bottleBootstrap` in index.ts), the relay's configuration (layout.ts's RelayConfig) as the
 * first argument, then the command, so it needs nothing from the agent image but `node`. In an image
 * with Perl, a starter (relay-start.ts) listens first, runs the command at once, and starts this
 * file beside it with the listening sockets (`listenFds`): then this file only pipes connections. It uses Node's built-ins only and touches neither
 * stdin nor stdout: the command inherits the terminal, and Node must not switch the shared
 * terminal's file descriptors to non-blocking mode.
 */
import { spawn } from "node:child_process";
import { chmodSync, existsSync, rmSync, writeSync } from "node:fs";
import { connect, createServer } from "node:net";
import { constants } from "node:os";
import { join } from "node:path";
import { isatty } from "node:tty";
import {
  endSocket,
  hostPortSocket,
  meetingDir,
  outboundDir,
  publishSocket,
  type RelayConfig,
  readyFile,
  relayPorts,
  socketNames,
} from "./layout.js";
import { joinConnections } from "./pipe.js";

function fail(message: string, code: number): never {
  writeSync(2, `claude-bottle: ${message}\n`);
  process.exit(code);
}

/** How long a connection waits for the gateway to come up; by then the CLI has long given up on it. */
const gatewayPatience = 60_000;
let ready: Promise<void> | undefined;

/** The run's folder in the meeting folder: its top, or the run's own folder in a warm gateway. */
let runFolder = meetingDir;

/** Resolves once the gateway has written its `ready` marker; rejects after `gatewayPatience`. */
function gatewayReady(): Promise<void> {
  ready ??= new Promise((resolve, reject) => {
    const path = join(runFolder, readyFile);
    const started = Date.now();
    const check = () => {
      if (existsSync(path)) resolve();
      else if (Date.now() - started > gatewayPatience)
        reject(new Error("the bottle's gateway did not start"));
      else setTimeout(check, 5);
    };
    check();
  });
  return ready;
}

/**
 * Listen on 127.0.0.1:`port`, or on the socket already listening there that the starter handed down
 * (`inherited`, relay-start.ts), and pipe each connection to the gateway's `socketPath`.
 */
async function listen(port: number, socketPath: string, inherited?: number): Promise<void> {
  const server = createServer((inbound) => {
    // Held (unread, so the client's bytes wait in the socket) until the gateway's sockets exist.
    inbound.on("error", () => inbound.destroy());
    gatewayReady().then(
      () => joinConnections(inbound, connect(socketPath)),
      () => inbound.destroy(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    if (inherited === undefined) server.listen(port, "127.0.0.1", () => resolve());
    else server.listen({ fd: inherited }, () => resolve());
  });
  // The relay must not keep the bottle alive once the command is done; beside a starter that runs
  // the command, it is all this process does.
  if (inherited === undefined) server.unref();
}

/**
 * A published port (`--publish`): a unix socket in the outbound volume, where the gateway connects
 * for each connection from the host, piped to whatever the agent serves on 127.0.0.1:`port` here.
 */
async function listenForHost(port: number): Promise<void> {
  const path = join(outboundDir, publishSocket(port));
  rmSync(path, { force: true });
  const server = createServer((inbound) => {
    joinConnections(inbound, connect({ host: "127.0.0.1", port }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  // The gateway runs as another user, with no capability to override file permissions.
  chmodSync(path, 0o666);
  server.unref();
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? "{}") as RelayConfig;
  if (config.runDir) runFolder = join(meetingDir, config.runDir);
  const inherited = config.listenFds;
  const waits: Promise<void>[] = [];
  for (const service of config.services) {
    const port = relayPorts[service];
    waits.push(listen(port, join(runFolder, socketNames[service]), inherited?.[port]));
  }
  // Allowed ports of the user's machine, each on this loopback at its own number.
  for (const port of config.hostPorts)
    waits.push(listen(port, join(runFolder, hostPortSocket(port)), inherited?.[port]));
  try {
    await Promise.all(waits);
    // The starter runs the command, waits for it and tells the gateway; this process only pipes.
    if (inherited) return;
    if (config.waitForGateway) await gatewayReady();
    // The gateway makes the outbound volume writable for this relay before it is ready.
    if (config.publish.length > 0) await Promise.all(config.publish.map((port) => listenForHost(port)));
  } catch (error) {
    const message = (error as Error).message;
    fail(
      message.includes("gateway") ? message : `the bottle's network relay could not listen: ${message}`,
      125,
    );
  }

  const [command, ...args] = process.argv.slice(3);
  if (!command) fail("no command to run", 125);
  const child = spawn(command, args, { stdio: "inherit" });
  child.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") fail(`${command}: command not found`, 127);
    fail(`${command}: ${error.message}`, 126);
  });
  child.on("exit", (code, signal) => {
    const status = code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
    const exit = () => process.exit(status);
    // Tell the gateway that the bottle is done, so that it stops while the engine removes this
    // container rather than after; one that has not made its socket yet is stopped by the CLI.
    const told = connect(join(runFolder, endSocket), exit);
    told.on("error", exit);
    setTimeout(exit, 200);
  });
  // Signals for the bottle (docker stop, Ctrl-C without a terminal) reach this process first, from
  // the container's init; pass them on. With a terminal, the terminal sends Ctrl-C's SIGINT to the
  // command itself (same process group), so it is not sent twice.
  const forwarded: NodeJS.Signals[] = ["SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGINT"];
  const terminal = isatty(0);
  for (const signal of forwarded) {
    process.on(signal, () => {
      if (!(terminal && signal === "SIGINT")) child.kill(signal);
    });
  }
}

await main();
