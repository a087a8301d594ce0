/**
 * The relay: runs inside the bottle, which has no network but loopback. It listens on the bottle's
 * 127.0.0.1 at fixed ports and pipes each connection to the gateway's unix socket for that service,
 * then runs the bottle's command with the environment the gateway published (ANTHROPIC_BASE_URL and
 * the proxy variables pointing at those ports), and ends with its exit code.
 *
 * It is started by a one-line bootstrap (`bottleBootstrap` in index.ts) that waits for the gateway
 * to copy this file into the shared folder, so it needs nothing from the agent image but `node`.
 * It uses Node's built-ins only and touches neither stdin nor stdout: the command inherits the
 * terminal, and Node must not switch the shared terminal's file descriptors to non-blocking mode.
 */
import { spawn } from "node:child_process";
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import { connect, createServer } from "node:net";
import { constants } from "node:os";
import { join } from "node:path";
import { isatty } from "node:tty";
import {
  bottleEnvFile,
  hostPortSocketPattern,
  meetingDir,
  outboundDir,
  publishFile,
  publishSocket,
  relayPorts,
  socketNames,
} from "./layout.js";
import { joinConnections } from "./pipe.js";

function fail(message: string, code: number): never {
  writeSync(2, `claude-bottle: ${message}\n`);
  process.exit(code);
}

async function listen(port: number, socketPath: string): Promise<void> {
  const server = createServer((inbound) => {
    joinConnections(inbound, connect(socketPath));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  // The relay must not keep the bottle alive once the command is done.
  server.unref();
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
  const env = JSON.parse(readFileSync(join(meetingDir, bottleEnvFile), "utf8")) as Record<string, string>;
  const waits: Promise<void>[] = [];
  for (const service of ["api", "proxy"] as const) {
    const path = join(meetingDir, socketNames[service]);
    if (existsSync(path)) waits.push(listen(relayPorts[service], path));
  }
  // Allowed ports of the user's machine, each on this loopback at its own number.
  for (const name of readdirSync(meetingDir)) {
    const match = hostPortSocketPattern.exec(name);
    if (match) waits.push(listen(Number(match[1]), join(meetingDir, name)));
  }
  const publishList = join(meetingDir, publishFile);
  if (existsSync(publishList)) {
    for (const port of JSON.parse(readFileSync(publishList, "utf8")) as number[])
      waits.push(listenForHost(port));
  }
  try {
    await Promise.all(waits);
  } catch (error) {
    fail(`the bottle's network relay could not listen: ${(error as Error).message}`, 125);
  }

  const [command, ...args] = process.argv.slice(1);
  if (!command) fail("no command to run", 125);
  const child = spawn(command, args, { stdio: "inherit", env: { ...process.env, ...env } });
  child.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") fail(`${command}: command not found`, 127);
    fail(`${command}: ${error.message}`, 126);
  });
  child.on("exit", (code, signal) => {
    process.exit(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
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
