/**
 * What every attack works with: the conformance context (a backend, its prepared image, fresh
 * workspaces), a double of the Anthropic API behind the backend's credential handling, a fake
 * "real" credential that must never reach the bottle, a decoy service listening on every address
 * of the machine the tests run on, and a way to run attack code inside a real bottle.
 *
 * Attack code runs in the bottle as a Node.js script (the agent image has Node for Claude Code).
 * It gets a small toolkit (`bottleToolkit`: raw sockets, CONNECT through the proxy, writing the
 * result), does what an agent could do, and writes what it observed to the workspace. The judging
 * happens here, on the host, where the secret is known; the bottle is never told it.
 */
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import type { RunResult, RunSpecInput } from "../../run-spec.js";
import { type AnthropicApiDouble, startAnthropicApiDouble } from "../anthropic-api-double.js";
import {
  type BackendConformanceOptions,
  type ConformanceContext,
  ConformanceError,
  createConformanceContext,
} from "../backend-conformance.js";

export interface BackendAttackOptions<Prepared = unknown> extends BackendConformanceOptions<Prepared> {
  /**
   * Where the API double listens; its URL becomes the bottle's `anthropicBaseUrl`. Default
   * 127.0.0.1 (the host's loopback, which the backend's API forwarder must reach).
   */
  apiDoubleHost?: string;
  /**
   * The API double's URL as the backend's services reach it (default: as it is). A backend whose
   * services run elsewhere than this process (a gateway container) maps it to an address of this
   * machine that they reach.
   */
  apiUrlFor?: (doubleUrl: string) => string | Promise<string>;
}

/** A service on the machine the tests run on, listening on all its addresses; it records every connection. */
export interface DecoyService {
  readonly port: number;
  /** Remote addresses of the connections it accepted. */
  readonly connections: readonly string[];
}

export interface AttackContext<Prepared = unknown> extends ConformanceContext<Prepared> {
  readonly options: BackendAttackOptions<Prepared>;
  /** The Anthropic API double; its requests show what the forwarder passed on. */
  readonly api: AnthropicApiDouble;
  /** The user's "real" API key for this suite: distinctive, so that finding it anywhere means a leak. */
  readonly secret: string;
  readonly decoy: DecoyService;
  /** Run `code` (a Node.js script body, with `bottleToolkit` in scope) in a bottle; resolves with what it reported. */
  attack(code: string, overrides?: Partial<RunSpecInput>): Promise<AttackOutcome>;
}

export interface AttackOutcome {
  result: RunResult;
  /** What the script passed to `report(...)`. */
  observed: Record<string, unknown>;
  workspace: string;
  home: string;
}

export interface Attack {
  /** A short stable id, e.g. "forwarder-open-relay". */
  id: string;
  /** The declared capability the attack tries to break; backends that do not declare it are not attacked for it. */
  capability: "credentials" | "egress";
  /** The guarantee the attack tries to break, as the test report shows it. */
  title: string;
  run(context: AttackContext): Promise<void>;
}

/** An attack that succeeded: the guarantee in its title does not hold. */
export class AttackSucceeded extends ConformanceError {
  constructor(message: string) {
    super(message);
    this.name = "AttackSucceeded";
  }
}

export function expectBlocked(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AttackSucceeded(message);
}

/**
 * Helpers in scope of every attack script: `base` (ANTHROPIC_BASE_URL as a URL), `proxy`
 * (HTTPS_PROXY as a URL, or undefined), `exchange(host, port, text, { untilHead })` (write bytes
 * to a socket, read the answer until the peer closes, the head is complete, or 5 s pass),
 * `statusOf(text)`, `viaProxy(authority)` (a CONNECT through the proxy: its status line), and
 * `report(value)` (the script's result; the last call wins).
 */
export const bottleToolkit = String.raw`
const net = require("node:net");
const fs = require("node:fs");
const base = new URL(process.env.ANTHROPIC_BASE_URL);
const proxyEnv = process.env.HTTPS_PROXY || process.env.https_proxy;
const proxy = proxyEnv ? new URL(proxyEnv) : undefined;
const bare = (hostname) => hostname.replace(/^\[|\]$/g, "");
function exchange(host, port, text, { untilHead = false, timeoutMs = 5000 } = {}) {
  return new Promise((resolve) => {
    const chunks = [];
    const socket = net.connect(Number(port), bare(host));
    const done = () => { socket.destroy(); resolve(Buffer.concat(chunks).toString("latin1")); };
    socket.setTimeout(timeoutMs, done);
    socket.on("error", (error) => { chunks.push(Buffer.from("ERROR " + error.code)); done(); });
    socket.on("data", (chunk) => {
      chunks.push(chunk);
      if (untilHead && Buffer.concat(chunks).includes("\r\n\r\n")) done();
    });
    socket.on("close", done);
    socket.on("connect", () => socket.write(text));
  });
}
const statusOf = (text) => Number((/^HTTP\/1\.[01] (\d{3})/.exec(text) || [])[1] || 0);
async function viaProxy(authority) {
  if (!proxy) return { status: 0, text: "no proxy" };
  const text = await exchange(proxy.hostname, proxy.port, "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n", { untilHead: true });
  return { status: statusOf(text), text: text.slice(0, 300) };
}
function report(value) { fs.writeFileSync("attack-result.json", JSON.stringify(value)); }
`;

/** Set up the suite's context: the backend (prepared once), the API double and the decoy. */
export async function createAttackContext<Prepared>(
  options: BackendAttackOptions<Prepared>,
): Promise<AttackContext<Prepared> & { close(): Promise<void> }> {
  const conformance = await createConformanceContext(options);
  const api = await startAnthropicApiDouble({ turns: [], host: options.apiDoubleHost ?? "127.0.0.1" });
  const apiUrl = options.apiUrlFor ? await options.apiUrlFor(api.url) : api.url;
  const decoy = await startDecoy();
  const secret = `sk-ant-api03-ATTACKSUITE-${randomBytes(16).toString("hex")}`;
  const attack: AttackContext<Prepared>["attack"] = async (code, overrides = {}) => {
    const script = `${bottleToolkit}\n(async () => {\n${code}\n})().catch((error) => { report({ crashed: String(error && error.stack || error) }); process.exit(3); });`;
    const { spec, workspace } = await conformance.newRun('exec node -e "$1"', [script], {
      secrets: { ANTHROPIC_API_KEY: secret },
      anthropicBaseUrl: apiUrl,
      ...overrides,
    });
    const result = await conformance.backend.run(conformance.prepared, spec);
    let observed: Record<string, unknown>;
    try {
      observed = JSON.parse(await readFile(join(workspace, "attack-result.json"), "utf8"));
    } catch {
      throw new ConformanceError(
        `the attack script wrote no result (exit code ${result.exitCode}); the bottle must run \`node -e\` in its workspace`,
      );
    }
    if (typeof observed.crashed === "string") {
      throw new ConformanceError(`the attack script failed inside the bottle: ${observed.crashed}`);
    }
    return { result, observed, workspace, home: spec.home };
  };
  return {
    ...conformance,
    options,
    api,
    secret,
    decoy,
    attack,
    async close() {
      await Promise.allSettled([api.close(), decoy.close(), conformance.cleanup()]);
    },
  };
}

async function startDecoy(): Promise<DecoyService & { close(): Promise<void> }> {
  const connections: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections.push(socket.remoteAddress ?? "?");
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    socket.end("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\ndecoy");
  });
  // "::" listens on IPv4 too where the machine has IPv6; otherwise all IPv4 addresses.
  server.listen(0, "::");
  try {
    await once(server, "listening");
  } catch {
    server.listen(0, "0.0.0.0");
    await once(server, "listening");
  }
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
