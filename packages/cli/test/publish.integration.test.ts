// `--publish PORT[:HOSTPORT]`: a server the agent starts in the bottle answers on this machine's
// 127.0.0.1:HOSTPORT (and not to another container at the gateway's address), `run` says where, a host port already in use is refused with one line, and
// nothing of the run (bottle, gateway, either volume) is left behind.
//
// scripts/test.sh leaves this file out of its second-engine pass: Docker publishes the port on the
// loopback of the engine's own network namespace there, which this test process cannot reach (as
// with the smolmachines tests' registry). The mapping itself is the same in both topologies.
import { randomBytes } from "node:crypto";
import { access, chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runClaudeBottle } from "./claude-bottle-process.js";

let root: string;
let workspace: string;
const slug = `publish-${randomBytes(3).toString("hex")}`;
const held: Server[] = [];

/** A free port on this machine's loopback (taken and released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-publish-"));
  workspace = join(root, slug);
  await mkdir(workspace);
  if (process.getuid?.() === 0) await chown(workspace, 1001, 1001);
});
afterAll(async () => {
  // A failed test may leave its bottle running: stop this test's own, by name (gateway and volumes go too).
  for (const name of await bottlesHere()) await claudeBottle(["stop", name]);
  for (const server of held) server.close();
  await rm(root, { recursive: true, force: true });
});

function claudeBottle(args: string[]) {
  return runClaudeBottle(args, { cwd: workspace, dataDir: join(root, "data") });
}

/** The names of this test's bottles that are running. */
async function bottlesHere(): Promise<string[]> {
  const { stdout } = await execa("docker", [
    "ps",
    "--filter",
    `label=dev.claude-bottle.workspace=${workspace}`,
    "--filter",
    "label=dev.claude-bottle.role=bottle",
    "--format",
    "{{.Names}}",
  ]);
  return stdout.split("\n").filter(Boolean);
}

/** Volumes and containers of this test's bottles that are still there. */
async function leftovers(): Promise<string[]> {
  const containers = await execa("docker", ["ps", "-a", "--format", "{{.Names}}"]);
  const volumes = await execa("docker", ["volume", "ls", "--format", "{{.Name}}"]);
  return [...containers.stdout.split("\n"), ...volumes.stdout.split("\n")].filter((name) =>
    name.startsWith(`claude-bottle-${slug}`),
  );
}

describe("--publish", () => {
  it("makes the agent's server answer on this machine's 127.0.0.1 only, and says where", async () => {
    const hostPort = await freePort();
    // The agent's server: on the bottle's own loopback, port 3000; a request for /stop ends the run.
    const server =
      'require("http").createServer((q,r)=>{r.end("served from the bottle");if(q.url==="/stop")setTimeout(()=>process.exit(0),100)})' +
      '.listen(3000,"127.0.0.1");setTimeout(()=>process.exit(3),120000)';
    const run = claudeBottle(["shell", "-q", "--publish", `3000:${hostPort}`, "--", "node", "-e", server]);
    const get = (path: string) =>
      fetch(`http://127.0.0.1:${hostPort}${path}`).then(
        async (response) => (response.ok ? await response.text() : undefined),
        () => undefined,
      );
    let body: string | undefined;
    for (let i = 0; i < 480 && body === undefined; i++) {
      body = await get("/");
      if (body === undefined) await sleep(250);
    }
    expect(body).toBe("served from the bottle");

    // Another container on the gateway's network tries the gateway's own address: refused.
    const gateway = (
      await execa("docker", [
        "ps",
        "--filter",
        `label=dev.claude-bottle.workspace=${workspace}`,
        "--filter",
        "label=dev.claude-bottle.role=gateway",
        "--format",
        "{{.Names}}",
      ])
    ).stdout.trim();
    const address = (
      await execa("docker", ["inspect", "-f", "{{.NetworkSettings.Networks.bridge.IPAddress}}", gateway])
    ).stdout.trim();
    expect(address).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    const neighbour = await execa(
      "docker",
      [
        "run",
        "--rm",
        "--name",
        `${slug}-neighbour`,
        "--network",
        "bridge",
        "claude-bottle-test-agent:latest",
        "node",
        "-e",
        `fetch("http://${address}:${hostPort}/").then(r=>r.text()).then(t=>console.log("reached:"+t),e=>console.log("refused:"+e.message))`,
      ],
      { reject: false },
    );
    expect(neighbour.stdout).toContain("refused:");

    expect(await get("/stop")).toBe("served from the bottle");
    const result = await run;
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain(`claude-bottle: http://127.0.0.1:${hostPort} -> the bottle's port 3000`);
    expect(await leftovers()).toEqual([]);
  });

  it("gives the host nothing else when the agent swaps its published socket for a link into the gateway", async () => {
    const hostPort = await freePort();
    // The attack: replace the relay's socket with a symlink to the gateway's API forwarder socket
    // (connect() would follow it inside the gateway), say so, and wait to be asked.
    const attack =
      "sock=/run/claude-bottle-out/publish-3000.sock; rm -f $sock && ln -s /run/claude-bottle/api.sock $sock && " +
      "touch swapped && sleep 60";
    const run = claudeBottle(["shell", "-q", "--publish", `3000:${hostPort}`, "--", "sh", "-c", attack]);
    for (let i = 0; i < 480; i++) {
      if (
        await access(join(workspace, "swapped")).then(
          () => true,
          () => false,
        )
      )
        break;
      await sleep(250);
    }
    const answer = await fetch(`http://127.0.0.1:${hostPort}/v1/messages`, {
      method: "POST",
      body: "{}",
    }).then(
      (response) => `HTTP ${response.status}`,
      () => "no answer",
    );
    expect(answer).toBe("no answer");
    for (const bottle of await bottlesHere()) await claudeBottle(["stop", bottle]);
    await run;
    expect(await leftovers()).toEqual([]);
  });

  it("refuses a host port already in use with one clear line, and leaves nothing behind", async () => {
    const taken = createServer();
    held.push(taken);
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", () => resolve()));
    const { port } = taken.address() as { port: number };
    const result = await claudeBottle(["shell", "-q", "--publish", `3000:${port}`, "--", "sleep", "30"]);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain(
      `port ${port} on this machine is already in use, so --publish cannot use it`,
    );
    expect(await leftovers()).toEqual([]);
  });
});
