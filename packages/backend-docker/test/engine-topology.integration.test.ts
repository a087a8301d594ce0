// Where the engine under test sits, checked against what the test run says it is, so that the
// backend's tests passing in a topology mean something. scripts/test.sh runs these tests twice
// (CLAUDE_BOTTLE_TEST_TOPOLOGY):
//   local          the engine on this host, sharing this host's network stack (the default)
//   second-engine  a dockerd in a network namespace of its own, reached over its unix socket
//                  (scripts/second-engine.sh), as the engine sits on Docker Desktop, colima and
//                  remote hosts; its containers reach this host at CLAUDE_BOTTLE_TEST_ENGINE_HOST_ADDRESS
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server } from "node:net";
import { hostAddresses } from "@claude-bottle/gateway";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseImage, engine } from "./support.js";

const topology = process.env.CLAUDE_BOTTLE_TEST_TOPOLOGY || "local";
if (topology !== "local" && topology !== "second-engine") {
  throw new Error(`CLAUDE_BOTTLE_TEST_TOPOLOGY=${topology} is neither "local" nor "second-engine"`);
}
const elsewhere = topology === "second-engine";

/** Servers on this host that answer with their name, on loopback and on every address. */
const servers: Server[] = [];
async function serve(name: string, host: string): Promise<number> {
  const server = createServer((socket) => socket.end(name));
  server.listen(0, host);
  await once(server, "listening");
  servers.push(server);
  return (server.address() as { port: number }).port;
}

/** What a container of the engine under test gets from `address:port`: the greeting, or the error code. */
async function connectFromContainer(
  address: string,
  port: number,
  network = "bridge",
  runFlags: string[] = [],
): Promise<string> {
  const script = `
    const socket = require("net").connect(${port}, ${JSON.stringify(address)});
    let data = "";
    socket.setTimeout(5000, () => { console.log("TIMEOUT"); process.exit(); });
    socket.on("data", (chunk) => { data += chunk; });
    socket.on("end", () => console.log(data));
    socket.on("error", (error) => console.log(error.code));`;
  const out = await engine.exec(
    [
      ...[
        "run",
        "--rm",
        "--name",
        `cb-topology-${randomBytes(4).toString("hex")}`,
        "--network",
        network,
        ...runFlags,
      ],
      ...[baseImage, "node", "-e", script],
    ],
    "RUN_FAILED",
    "connecting from a container",
  );
  return out.trim();
}

let bridgeGateway = "";
let loopbackPort = 0;
let anyAddressPort = 0;

beforeAll(async () => {
  // As a container sees it: its default route. (The default bridge's IPAM config names no gateway
  // unless the engine was started with --bip.)
  const routes = await engine.exec(
    ["run", "--rm", baseImage, "cat", "/proc/net/route"],
    "RUN_FAILED",
    "reading a container's routes",
  );
  const hex = routes
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .find((fields) => fields[1] === "00000000")?.[2];
  // /proc/net/route writes addresses as little-endian hex.
  bridgeGateway = hex
    ? [3, 2, 1, 0].map((i) => Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join(".")
    : "";
  loopbackPort = await serve("loopback", "127.0.0.1");
  anyAddressPort = await serve("any address", "0.0.0.0");
});

afterAll(() => {
  for (const server of servers) server.close();
});

describe(`the engine under test sits where the run says (${topology})`, () => {
  it(`its default bridge's gateway is ${elsewhere ? "not " : ""}an address of this host`, () => {
    expect(bridgeGateway).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(hostAddresses().includes(bridgeGateway)).toBe(!elsewhere);
  });

  it(`a container on its host network ${elsewhere ? "does not reach" : "reaches"} a server on this host's loopback`, async () => {
    const answer = await connectFromContainer("127.0.0.1", loopbackPort, "host");
    expect(answer).toBe(elsewhere ? "ECONNREFUSED" : "loopback");
  });

  it("a container reaches this host at the address the run names for it", async () => {
    // The local engine's containers reach this host on their bridge's gateway.
    const hostAddress = elsewhere ? process.env.CLAUDE_BOTTLE_TEST_ENGINE_HOST_ADDRESS : bridgeGateway;
    expect(hostAddress, "CLAUDE_BOTTLE_TEST_ENGINE_HOST_ADDRESS (scripts/second-engine.sh env)").toBeTruthy();
    expect(await connectFromContainer(hostAddress!, anyAddressPort)).toBe("any address");
  });

  it("a container reaches this host at host.docker.internal mapped to host-gateway, as on Docker Desktop", async () => {
    const addHost = ["--add-host", "host.docker.internal:host-gateway"];
    expect(await connectFromContainer("host.docker.internal", anyAddressPort, "bridge", addHost)).toBe(
      "any address",
    );
  });
});
