// `--allow-host-port PORT`: a bottle reaches one service on the user's machine, as localhost:PORT,
// and nothing else of the machine. Two TCP services run here on 0.0.0.0 (where the bottle's gateway
// container can reach them, as a user's database on Linux must listen); each greets whoever
// connects with its name. The agent is the adversary: from inside a real bottle it tries the
// services by every way it has, its own loopback, the engine host's address, host.docker.internal,
// and the egress proxy.
//
// This runs in both topologies of scripts/test.sh: the second engine's `host-gateway` is set to
// this machine's address in that namespace, so host.docker.internal still names this machine.
import { randomBytes } from "node:crypto";
import { chown, copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { engineHostAddress } from "@claude-bottle/container-engine/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runClaudeBottle } from "./claude-bottle-process.js";

let root: string;
let workspace: string;
const servers: Server[] = [];
let allowed: number;
let other: number;
let hostAddress: string;

function greeter(name: string): Promise<number> {
  const server = createServer((socket) => socket.end(`hello-${name}\n`));
  servers.push(server);
  return new Promise((resolve) =>
    server.listen(0, "0.0.0.0", () => resolve((server.address() as { port: number }).port)),
  );
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-hostport-"));
  workspace = join(root, `hostport-${randomBytes(3).toString("hex")}`);
  await mkdir(workspace);
  await copyFile(
    fileURLToPath(new URL("./fixtures/port-probe.cjs", import.meta.url)),
    join(workspace, "probe.cjs"),
  );
  if (process.getuid?.() === 0) await chown(workspace, 1001, 1001);
  allowed = await greeter("allowed");
  other = await greeter("other");
  hostAddress = await engineHostAddress();
});
afterAll(async () => {
  for (const server of servers) server.close();
  await rm(root, { recursive: true, force: true });
});

/** Run the probe in a bottle with `flags`; the outcome for each target. */
async function probe(flags: string[], targets: string[]): Promise<Record<string, string>> {
  const result = await runClaudeBottle(["shell", "-q", ...flags, "--", "node", "probe.cjs", ...targets], {
    cwd: workspace,
    dataDir: join(root, "data"),
  });
  expect(result.exitCode, result.stderr).toBe(0);
  return JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "{}") as Record<string, string>;
}

/** Every way the agent could try port `port` of this machine. */
function waysTo(port: number): string[] {
  return [
    `127.0.0.1:${port}`,
    `${hostAddress}:${port}`,
    `host.docker.internal:${port}`,
    `proxy:${hostAddress}:${port}`,
    `proxy:host.docker.internal:${port}`,
  ];
}

describe("--allow-host-port", () => {
  it("without it, no service of this machine answers the bottle, however it asks", async () => {
    const outcomes = await probe([], waysTo(allowed));
    expect(Object.keys(outcomes)).toEqual(waysTo(allowed));
    for (const outcome of Object.values(outcomes)) expect(outcome).not.toContain("hello-");
  });

  it("with it, that one service answers on the bottle's localhost, and no other port of this machine does", async () => {
    const outcomes = await probe(
      ["--allow-host-port", String(allowed)],
      [`127.0.0.1:${allowed}`, `localhost:${allowed}`, ...waysTo(other), `${hostAddress}:${allowed}`],
    );
    expect(outcomes[`127.0.0.1:${allowed}`]).toBe("said hello-allowed");
    expect(outcomes[`localhost:${allowed}`]).toBe("said hello-allowed");
    for (const target of [...waysTo(other), `${hostAddress}:${allowed}`])
      expect(outcomes[target], target).not.toContain("hello-");
  });

  it("refuses a port that is not a port number, with one line and exit 2", async () => {
    const result = await runClaudeBottle(["shell", "-q", "--allow-host-port", "db", "--", "true"], {
      cwd: workspace,
      dataDir: join(root, "data"),
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr.trim().split("\n")[0]).toContain("--allow-host-port db: expected a port number");
  });
});
