// The Perl starter (relay-start.ts) with this machine's perl and node, as a bottle runs it, minus
// the container: the relay's file from this package's build, the ports and the end socket the
// test's own. Bottles run it for real in every Docker test that uses the bundled image.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { bottleBootstrap, gatewayAppDir } from "./index.js";

const relayFile = join(gatewayAppDir, "relay.mjs");

async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, "close");
  return port;
}

/** The starter's argv as bottleBootstrap makes it, with this build's relay and the test's end socket. */
function starterArgv(port: number, end: string, command: string[]): string[] {
  const argv = bottleBootstrap(
    { services: [], hostPorts: [port], publish: [], waitForGateway: false },
    "perl",
  );
  // perl -e CODE -- RELAY CONFIG END PORTS
  expect(argv.slice(0, 2)).toEqual(["perl", "-e"]);
  argv[4] = relayFile;
  argv[6] = end;
  return [...argv, ...command];
}

function sessionOf(pid: number | "self"): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3]);
}

/** The relays (node on this build's relay file) started for `port`, with their session ids. */
function relaysFor(port: number): { pid: number; session: number }[] {
  const found: { pid: number; session: number }[] = [];
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (!cmdline.includes(relayFile) || !cmdline.includes(`[${port}]`)) continue;
      found.push({ pid: Number(pid), session: sessionOf(Number(pid)) });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** The inode of the socket listening on 127.0.0.1:`port` (from /proc/net/tcp), if one is. */
function listeningSocketOf(port: number): string | undefined {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === local && fields[3] === "0A") return fields[9];
  }
  return undefined;
}

describe("the relay's Perl starter", () => {
  const ports: number[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    // Outside a container nothing ends the relay with the command; the test does.
    for (const port of ports.splice(0)) for (const { pid } of relaysFor(port)) process.kill(pid, "SIGKILL");
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  /** Start the starter on a free port, running `command(port)`. */
  const start = async (command: (port: number) => string[], env: NodeJS.ProcessEnv = {}) => {
    const port = await freePort();
    ports.push(port);
    const dir = await mkdtemp(join(tmpdir(), "cb-relay-start-"));
    dirs.push(dir);
    const end = join(dir, "end.sock");
    const [perl, ...args] = starterArgv(port, end, command(port));
    const child = spawn(perl!, args, {
      cwd: dir,
      env: { PATH: process.env.PATH, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    // `exit`, not `close`: the relay, left running here, holds the starter's stderr.
    const exited = once(child, "exit").then(([code, signal]) => ({ code, signal, output }));
    return { port, end, child, exited };
  };

  it("runs the command at once with its environment and passes its exit code on, 128 + the signal's number if one killed it, 127 with one line if it is missing", async () => {
    const plain = await start(() => ["sh", "-c", 'echo "$GREETING"; exit 3'], { GREETING: "hi" });
    expect(await plain.exited).toEqual({ code: 3, signal: null, output: "hi\n" });
    // It made no connection, so the relay never started.
    expect(relaysFor(plain.port)).toEqual([]);
    const killed = await start(() => ["sh", "-c", "kill -TERM $$"]);
    expect((await killed.exited).code).toBe(143);
    const missing = await start(() => ["no-such-command-here"]);
    expect(await missing.exited).toEqual({
      code: 127,
      signal: null,
      output: "claude-bottle: no-such-command-here: command not found\n",
    });
  });

  it("listens before the command starts: its first connection, made at once, is taken by the relay, started then beside the command in a session of its own; the command holds none of the listening sockets", async () => {
    const run = await start((port) => [
      "bash",
      "-c",
      // Connect at once, then list the sockets among this shell's open files.
      `exec 9<>/dev/tcp/127.0.0.1/${port} && echo connected; ls -l /proc/$$/fd | grep -o "socket:.[0-9]*"`,
    ]);
    const { code, output } = await run.exited;
    expect(code).toBe(0);
    const [said, ...held] = output.trim().split("\n");
    expect(said).toBe("connected");
    const listening = listeningSocketOf(run.port);
    expect(listening).toBeDefined();
    expect(held.map((line) => line.replace(/\D/g, ""))).not.toContain(listening);
    const [relay] = relaysFor(run.port);
    expect(relay).toBeDefined();
    // The starter (gone now) had this process's session, and gave the command that one too.
    expect(relay!.session).not.toBe(sessionOf("self"));
  });

  it("passes SIGTERM (docker stop) on to the command, and says on the end socket when the command has ended, not before", async () => {
    const told: number[] = [];
    let startedAt = 0;
    const run = await start(() => ["sh", "-c", "trap 'exit 42' TERM; sleep 30 & wait"]);
    startedAt = Date.now();
    const server = createServer((connection) => {
      told.push(Date.now());
      connection.destroy();
    }).listen(run.end);
    await once(server, "listening");
    try {
      await sleep(300);
      expect(told).toEqual([]);
      run.child.kill("SIGTERM");
      expect((await run.exited).code).toBe(42);
      await sleep(100);
      expect(told).toHaveLength(1);
      expect(told[0]! - startedAt).toBeGreaterThanOrEqual(300);
    } finally {
      server.close();
    }
  });
});
