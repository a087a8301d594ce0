/**
 * The egress proxy: the bottle's only way out. It sits on the host, on an address of the bottle's
 * network that has no other route out, and relays plain HTTP requests (absolute-form, `GET
 * http://host/path`) and CONNECT tunnels (`CONNECT host:443`, used for every HTTPS connection) to
 * hosts on the allow-list. Everything else gets an answer saying why (403 for a host not allowed,
 * 400 for a request it will not read) and a line in the denial log; requests Node's HTTP parser
 * already rejects get its 400 and no line. Clients inside find it through HTTP_PROXY / HTTPS_PROXY.
 *
 * The relaying itself is proxy-chain's (Apify's proxy server: HTTP and CONNECT, a hook to accept
 * or refuse each request with a status of our choosing, and a per-request DNS lookup). What is
 * ours is the decision, made once per request in `decide` before any connection exists:
 *
 * 1. The target is parsed strictly. A CONNECT line must be exactly `host:port`; an absolute-form
 *    request must be `http:` without user info, and its Host header must name the same host and
 *    port (otherwise a server behind an allowed address could be asked for another site). The
 *    target proxy-chain derived must equal ours, so we check what it connects to (they agree
 *    today; the comparison catches a future proxy-chain that reads targets differently).
 * 2. An IP address is allowed only by a CIDR (or single-address) rule.
 * 3. A name is allowed only by a host or wildcard rule. CIDR rules never admit a name, because
 *    that would mean resolving names nobody allowed: the lookup itself carries the name to DNS
 *    servers outside, and `<secret>.attacker.example` is a well-known way to smuggle data out of
 *    a network whose only open door is the resolver. The bottle has no DNS for that reason, and
 *    the proxy must not become one. So an unlisted name is refused without any lookup.
 * 4. An allowed name is resolved here, on the host. If any address it resolves to leads back to
 *    this machine (loopback, link-local, its own interfaces: see `hostLocalCheck`) it is refused
 *    unless a CIDR rule covers that address — so a name rule, or DNS records someone else
 *    controls, cannot open the host's own services to the bottle. This is the one place resolved
 *    addresses meet CIDR rules.
 * 5. The connection is made to exactly the addresses checked: proxy-chain receives a lookup
 *    function that answers with them, so a second, different DNS answer (rebinding) cannot slip in
 *    between check and connect.
 *
 * Allow rules carry no ports: an allowed host is allowed on every port. Inside a CONNECT tunnel
 * the proxy sees only encrypted bytes, so a CDN that routes by the TLS Host header (domain
 * fronting) could be asked for another site; only the first hop is checked.
 */

import { lookup as dnsLookup } from "node:dns/promises";
import { once } from "node:events";
import { createWriteStream, type WriteStream } from "node:fs";
import type { IncomingMessage } from "node:http";
import type { LookupFunction } from "node:net";
import { compileAllowList, hostLocalCheck, parseTargetHost, type TargetHost } from "./allow-rules.js";
import { nodeHttp } from "./node-http.js";

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolve a host name to its addresses (default: the host's resolver, as `dns.lookup` uses it). */
export type ResolveHost = (name: string) => Promise<ResolvedAddress[]>;

export interface EgressProxyOptions {
  /** The address to listen on: the gateway of the bottle's network (or 127.0.0.1 in tests). */
  host: string;
  /** Port to listen on; default: any free port. */
  port?: number;
  /** The effective allow-list (see `resolveNetworkAccess`). */
  allow: readonly string[];
  /** How names are resolved; default: the host's resolver. */
  resolve?: ResolveHost;
  /** Append one JSON line per refusal to this file. */
  deniedLogPath?: string;
  /** Whether an address leads back to this machine; default: `hostLocalCheck()`. */
  isHostLocal?: (address: string) => boolean;
}

/** One refusal, as written to the denial log. Never holds a path, a query or a header value. */
export interface Denial {
  /** ISO 8601. */
  time: string;
  host: string;
  port: number;
  method: "CONNECT" | "HTTP";
  /** not-allowed: not on the allow-list; host-local: an allowed name resolving to this machine; malformed: refused as a request. */
  reason: "not-allowed" | "host-local" | "malformed";
  detail?: string;
}

export interface EgressProxy extends AsyncDisposable {
  /** `http://host:port`, for HTTP_PROXY and HTTPS_PROXY. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Hosts refused because the allow-list lacks them, in order of first refusal. */
  deniedHosts(): string[];
  close(): Promise<void>;
}

const defaultResolve: ResolveHost = async (name) =>
  (await dnsLookup(name, { all: true, order: "verbatim" })).map(({ address, family }) => ({
    address,
    family: family === 6 ? 6 : 4,
  }));

// Loaded on first use, not at the top: only a run in allowlist mode needs the proxy, and proxy-chain
// with its dependencies costs every other command tens of milliseconds of start-up (BENCHMARKS.md).
let proxyChain: Promise<typeof import("proxy-chain")> | undefined;
const loadProxyChain = () => {
  proxyChain ??= import("proxy-chain");
  return proxyChain;
};

/**
 * Begin loading the proxy's code without starting anything, so that the load overlaps slow work
 * elsewhere (Docker creating the bottle's network, say). A failure to load is reported by
 * `startEgressProxy`.
 */
export function preloadEgressProxy(): void {
  loadProxyChain().catch(() => {});
}

export async function startEgressProxy(options: EgressProxyOptions): Promise<EgressProxy> {
  const { RequestError, Server } = await loadProxyChain();
  const { Agent } = nodeHttp();
  const allowList = compileAllowList(options.allow);
  const resolve = options.resolve ?? defaultResolve;
  const isHostLocal = options.isHostLocal ?? hostLocalCheck();
  const agent = new Agent({ keepAlive: true });
  const denied = new Set<string>();
  const log = options.deniedLogPath ? await openLog(options.deniedLogPath) : undefined;

  const refuse = (denial: Omit<Denial, "time">, status: number, message: string): never => {
    if (denial.reason !== "malformed") denied.add(denial.host);
    log?.write(`${JSON.stringify({ time: new Date().toISOString(), ...denial })}\n`);
    throw new RequestError(`claude-bottle: ${message}\n`, status);
  };

  const decide = async (request: IncomingMessage, chainHost: string, isHttp: boolean) => {
    const method = isHttp ? "HTTP" : "CONNECT";
    const parsed = isHttp ? parseAbsoluteForm(request) : parseConnectTarget(request.url ?? "");
    if ("problem" in parsed) {
      const { host = "", port = 0, problem } = parsed;
      return refuse({ host, port, method, reason: "malformed", detail: problem }, 400, problem);
    }
    const { target, port } = parsed;
    const host = target.kind === "name" ? target.name : target.address;
    if (!sameTarget(parseTargetHost(chainHost), target)) {
      const problem = "the request's target could not be read unambiguously";
      return refuse({ host, port, method, reason: "malformed", detail: problem }, 400, problem);
    }
    const notAllowed = () =>
      refuse(
        { host, port, method, reason: "not-allowed" },
        403,
        `${host} is not on this bottle's network allow-list (network.allow in claude-bottle.config.json, or run --allow ${host})`,
      );
    if (target.kind === "ip") {
      if (!allowList.matchAddress(target.address)) return notAllowed();
      // Node connects to an IP literal without a lookup; should it ask, it is told nothing.
      return { dnsLookup: pinnedLookup("", []) as never };
    }
    if (!allowList.matchName(target.name)) return notAllowed();
    let addresses: ResolvedAddress[];
    try {
      addresses = await resolve(target.name);
    } catch {
      addresses = [];
    }
    if (addresses.length === 0) throw new RequestError(`claude-bottle: could not resolve ${host}\n`, 502);
    const local = addresses.find(({ address }) => isHostLocal(address) && !allowList.matchAddress(address));
    if (local) {
      return refuse(
        { host, port, method, reason: "host-local", detail: `resolves to ${local.address}` },
        403,
        `${host} resolves to ${local.address}, an address of the host itself; only a CIDR rule can allow that`,
      );
    }
    return { dnsLookup: pinnedLookup(target.name, addresses) as never };
  };

  const server = new Server({
    host: options.host,
    port: options.port ?? 0,
    authRealm: "claude-bottle",
    prepareRequestFunction: async ({ request, hostname, isHttp }) => ({
      ...(await decide(request, hostname, isHttp)),
      httpAgent: agent,
    }),
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await server.close(true);
    agent.destroy();
    if (log) {
      log.end();
      await once(log, "close");
    }
  };
  try {
    await server.listen();
  } catch (error) {
    agent.destroy();
    log?.destroy();
    throw error;
  }
  const port = server.port;
  const urlHost = options.host.includes(":") ? `[${options.host}]` : options.host;
  return {
    url: `http://${urlHost}:${port}`,
    host: options.host,
    port,
    deniedHosts: () => [...denied],
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The denial log, opened before the proxy starts so that a path it cannot write fails the start. */
async function openLog(path: string): Promise<WriteStream> {
  const log = createWriteStream(path, { flags: "a", mode: 0o600 });
  await once(log, "open");
  // A full disk later on must not take the proxy down; deniedHosts() still has every refusal.
  log.on("error", () => {});
  return log;
}

type ParsedTarget = { target: TargetHost; port: number } | { problem: string; host?: string; port?: number };

/** `CONNECT host:port`, nothing more: no user info, no path, a port from 1 to 65535. */
function parseConnectTarget(authority: string): ParsedTarget {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]/?#@\\%]+):(\d{1,5})$/.exec(authority);
  if (!match) return { problem: "CONNECT needs host:port" };
  const target = parseTargetHost(match[1]!);
  const port = Number(match[2]);
  if (!target) return { problem: `${match[1]} is not a host name or an IP address` };
  return port >= 1 && port <= 65535 ? { target, port } : { problem: `${port} is not a port` };
}

/**
 * `GET http://host[:port]/path` through the proxy. The URL is read as WHATWG URL does (which is how
 * proxy-chain and Node's http client read it), so `http://a@b/`, `http://b#@a/` and `http://b\@a/`
 * all mean host b. User info is refused outright; the Host header must name the same host and port.
 */
function parseAbsoluteForm(request: IncomingMessage): ParsedTarget {
  let url: URL;
  try {
    url = new URL(request.url ?? "");
  } catch {
    return { problem: "the request target is not an absolute http:// URL" };
  }
  const target = parseTargetHost(url.hostname);
  const host = target ? (target.kind === "name" ? target.name : target.address) : url.hostname;
  if (url.protocol !== "http:") return { problem: "only http:// is relayed; use CONNECT for https", host };
  if (url.username || url.password) return { problem: "user info in the URL is not relayed", host };
  if (!target) return { problem: `${url.hostname} is not a host name or an IP address`, host };
  const port = url.port ? Number(url.port) : 80;
  if (port < 1) return { problem: `${port} is not a port`, host, port };
  const hostHeader = request.headers.host;
  const named = hostHeader === undefined ? undefined : parseHostHeader(hostHeader);
  if (!named || !sameTarget(named.target, target) || named.port !== port) {
    return { problem: "the Host header does not match the request's host", host, port };
  }
  return { target, port };
}

function parseHostHeader(value: string): { target: TargetHost; port: number } | undefined {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]/?#@\\%]+)(?::(\d{1,5}))?$/.exec(value);
  const target = match ? parseTargetHost(match[1]!) : undefined;
  if (!match || !target) return undefined;
  // Host headers are read without URL parsing, so IPv4 shorthand (`127.1`) stays what it is: no host.
  return { target, port: match[2] === undefined ? 80 : Number(match[2]) };
}

function sameTarget(a: TargetHost | undefined, b: TargetHost): boolean {
  if (!a || a.kind !== b.kind) return false;
  if (a.kind === "name") return a.name === (b as { name: string }).name;
  return a.address === (b as { address: string }).address;
}

/**
 * A `dns.lookup` stand-in that answers with the addresses already checked, and only for the name
 * they were checked for. Node calls it with `all: true` when it races IPv4 and IPv6
 * (autoSelectFamily), and without when it wants one address.
 */
function pinnedLookup(name: string, addresses: readonly ResolvedAddress[]): LookupFunction {
  return (hostname, lookupOptions, callback) => {
    const asked = parseTargetHost(hostname);
    const family =
      lookupOptions.family === "IPv4" ? 4 : lookupOptions.family === "IPv6" ? 6 : lookupOptions.family;
    const answer = addresses.filter((entry) => !family || entry.family === family);
    const first = answer[0];
    if (asked?.kind !== "name" || asked.name !== name || !first) {
      const error = Object.assign(new Error(`claude-bottle: no checked address for ${hostname}`), {
        code: "ENOTFOUND",
      });
      callback(error, "", 0);
      return;
    }
    if (lookupOptions.all) (callback as unknown as (e: null, a: ResolvedAddress[]) => void)(null, answer);
    else callback(null, first.address, first.family);
  };
}
