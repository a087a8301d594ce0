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
 * 4. An allowed name is resolved here, on the host. If any address it resolves to, or an IP
 *    target itself, leads back to this machine (loopback, link-local, its own interfaces as they
 *    are at this moment), is a cloud metadata address, or lies in a range the backend forbids
 *    (the engine's address pools, other bottles' networks: see `addressGuard`), it is refused.
 *    No allow rule opens these: not a name rule, not DNS records someone else controls, and not
 *    a CIDR rule that happens to cover them (Docker's address pools sit inside the private ranges
 *    people allow).
 * 5. The connection is made to exactly the addresses checked: proxy-chain receives a lookup
 *    function that answers with them, so a second, different DNS answer (rebinding) cannot slip in
 *    between check and connect.
 *
 * 6. Plain HTTP with a body on GET, HEAD, DELETE, OPTIONS or TRACE framed by transfer-encoding is
 *    refused: Node's client sends such a body unframed, so on a kept-alive upstream connection
 *    it would become a second request the proxy never checked (request smuggling).
 *
 * Limits keep one bottle from exhausting the host: connections idle longer than `idleTimeoutMs`
 * are closed (tunnels included), at most `maxTunnels` CONNECT tunnels are open at once (more are
 * refused and logged), the denial log is rotated once at `deniedLogMaxBytes`, and `deniedHosts`
 * names at most `maxDeniedHosts` hosts and says how many more there were.
 *
 * Allow rules carry no ports: an allowed host is allowed on every port. Inside a CONNECT tunnel
 * the proxy sees only encrypted bytes, so a CDN that routes by the TLS Host header (domain
 * fronting) could be asked for another site; only the first hop is checked.
 */

import { lookup as dnsLookup } from "node:dns/promises";
import { closeSync, constants, fstatSync, openSync, renameSync, writeSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import type { LookupFunction, Socket } from "node:net";
import type { networkInterfaces } from "node:os";
import { nodeHttp } from "@claude-bottle/core/node-builtins";
import {
  addressGuard,
  compileAllowList,
  type ForbiddenReason,
  parseTargetHost,
  type TargetHost,
} from "./allow-rules.js";

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
  /** Append one JSON line per refusal to this file (bounded and rotated, see `DenialLog`). */
  deniedLogPath?: string;
  /** Called with each refusal, e.g. to hand it to a process that keeps the log elsewhere. */
  onDenial?: (denial: Denial) => void;
  /**
   * Whether an address leads back to this machine; default: loopback, link-local, multicast and
   * the machine's interfaces as they are at each connection. Metadata addresses and
   * `forbiddenRanges` are refused whatever this says.
   */
  isHostLocal?: (address: string) => boolean;
  /** The machine's interfaces (default: os.networkInterfaces), read again at most once a second. */
  interfaces?: () => ReturnType<typeof networkInterfaces>;
  /** Address blocks never to connect to, whatever the allow-list says (the engine's address pools...). */
  forbiddenRanges?: readonly string[];
  /** Address blocks that are the host itself too (see `addressGuard`): refused as host addresses. */
  hostRanges?: readonly string[];
  limits?: EgressProxyLimits;
}

export interface EgressProxyLimits {
  /** Close a connection, tunnel or plain, after this long without a byte either way; default 300 000 (5 min). */
  idleTimeoutMs?: number;
  /** Most CONNECT tunnels open at once; more are refused with 503 and logged. Default 256. */
  maxTunnels?: number;
  /** The denial log is moved to `<path>.1` (replacing an older one) when it would grow past this; default 1 MiB. */
  deniedLogMaxBytes?: number;
  /** Most hosts `deniedHosts()` names; default 50. */
  maxDeniedHosts?: number;
}

const defaultLimits: Required<EgressProxyLimits> = {
  idleTimeoutMs: 300_000,
  maxTunnels: 256,
  deniedLogMaxBytes: 1024 * 1024,
  maxDeniedHosts: 50,
};
/** Distinct refused hosts counted at most; beyond, `deniedHosts` says "at least". */
const maxCountedDeniedHosts = 10_000;
/** Methods whose requests Node's client sends without framing a body. */
const bodilessMethods = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"]);

/** One refusal, as written to the denial log. Never holds a path, a query or a header value. */
export interface Denial {
  /** ISO 8601. */
  time: string;
  host: string;
  port: number;
  method: "CONNECT" | "HTTP";
  /**
   * not-allowed: not on the allow-list; host-local: this machine's own address; metadata: a cloud
   * metadata address; forbidden: a range the backend forbids; malformed: refused as a request;
   * limit: too many tunnels open.
   */
  reason: "not-allowed" | ForbiddenReason | "malformed" | "limit";
  detail?: string;
}

export interface EgressProxy extends AsyncDisposable {
  /** `http://host:port`, for HTTP_PROXY and HTTPS_PROXY. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /**
   * Hosts refused (not on the allow-list, or leading somewhere forbidden), in order of first
   * refusal: at most `maxDeniedHosts`, then one last entry "and N more".
   */
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
  const limits = { ...defaultLimits, ...options.limits };
  const allowList = compileAllowList(options.allow);
  const resolve = options.resolve ?? defaultResolve;
  const guard = addressGuard({
    ...(options.isHostLocal && { isHostLocal: options.isHostLocal }),
    ...(options.interfaces && { interfaces: options.interfaces }),
    ...(options.forbiddenRanges && { forbiddenRanges: options.forbiddenRanges }),
    ...(options.hostRanges && { hostRanges: options.hostRanges }),
  });
  const agent = new Agent({ keepAlive: true, maxSockets: limits.maxTunnels, timeout: limits.idleTimeoutMs });
  const denied = new Set<string>();
  const tunnels = new Set<Socket>();
  const log = options.deniedLogPath
    ? new DenialLog(options.deniedLogPath, limits.deniedLogMaxBytes)
    : undefined;

  const refuse = (denial: Omit<Denial, "time">, status: number, message: string): never => {
    const counted = denial.reason !== "malformed" && denial.reason !== "limit";
    if (counted && denied.size < maxCountedDeniedHosts) denied.add(denial.host);
    const recorded: Denial = { time: new Date().toISOString(), ...denial };
    log?.write(`${JSON.stringify(recorded)}\n`);
    options.onDenial?.(recorded);
    throw new RequestError(`claude-bottle: ${message}\n`, status);
  };
  const forbiddenMessage = (host: string, address: string, reason: ForbiddenReason) =>
    reason === "host-local"
      ? `${host === address ? host : `${host} resolves to ${address}, which`} is an address of the host itself; no allow rule opens it`
      : reason === "metadata"
        ? `${host === address ? host : `${host} resolves to ${address}, which`} is a cloud metadata address; no allow rule opens it`
        : `${host === address ? host : `${host} resolves to ${address}, which`} is in a range this bottle may never reach; no allow rule opens it`;

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
    if (
      isHttp &&
      bodilessMethods.has(request.method ?? "") &&
      request.headers["transfer-encoding"] !== undefined
    ) {
      const problem = `a ${request.method} request with a transfer-encoding body is not relayed`;
      return refuse({ host, port, method, reason: "malformed", detail: problem }, 400, problem);
    }
    if (!isHttp && tunnels.size >= limits.maxTunnels) {
      const problem = `this bottle already has ${limits.maxTunnels} tunnels open, the most it may`;
      return refuse({ host, port, method, reason: "limit", detail: problem }, 503, problem);
    }
    const notAllowed = () =>
      refuse(
        { host, port, method, reason: "not-allowed" },
        403,
        `${host} is not on this bottle's network allow-list (network.allow in claude-bottle.config.json, or run --allow ${host})`,
      );
    let lookup: LookupFunction;
    if (target.kind === "ip") {
      if (!allowList.matchAddress(target.address)) return notAllowed();
      const reason = guard(target.address);
      if (reason) {
        const message = forbiddenMessage(host, target.address, reason);
        return refuse({ host, port, method, reason }, 403, message);
      }
      // Node connects to an IP literal without a lookup; should it ask, it is told nothing.
      lookup = pinnedLookup("", []);
    } else {
      if (!allowList.matchName(target.name)) return notAllowed();
      let addresses: ResolvedAddress[];
      try {
        addresses = await resolve(target.name);
      } catch {
        addresses = [];
      }
      if (addresses.length === 0) throw new RequestError(`claude-bottle: could not resolve ${host}\n`, 502);
      for (const { address } of addresses) {
        const reason = guard(address);
        if (reason) {
          const message = forbiddenMessage(host, address, reason);
          return refuse({ host, port, method, reason, detail: `resolves to ${address}` }, 403, message);
        }
      }
      lookup = pinnedLookup(target.name, addresses);
    }
    if (!isHttp) {
      const socket = request.socket;
      tunnels.add(socket);
      socket.once("close", () => tunnels.delete(socket));
    }
    return { dnsLookup: lookup as never };
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
  // Every connection, and the tunnel a CONNECT turns it into, is closed after this long idle
  // (proxy-chain destroys a socket on its timeout event).
  server.server.timeout = limits.idleTimeoutMs;
  server.server.keepAliveTimeout = Math.min(5000, limits.idleTimeoutMs);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await server.close(true);
    agent.destroy();
    log?.close();
  };
  try {
    await server.listen();
  } catch (error) {
    agent.destroy();
    log?.close();
    throw error;
  }
  const port = server.port;
  const urlHost = options.host.includes(":") ? `[${options.host}]` : options.host;
  return {
    url: `http://${urlHost}:${port}`,
    host: options.host,
    port,
    deniedHosts: () => summarise([...denied], limits.maxDeniedHosts, denied.size >= maxCountedDeniedHosts),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The first `max` hosts, then "and N more" (or "and at least N more" once counting stopped). */
function summarise(hosts: string[], max: number, saturated: boolean): string[] {
  if (hosts.length <= max) return hosts;
  const more = hosts.length - max;
  return [...hosts.slice(0, max), `and ${saturated ? "at least " : ""}${more} more`];
}

/**
 * The denial log: one JSON line per refusal, at most `maxBytes` per file, with one older file
 * (`<path>.1`). Opened before the proxy starts, so that a path it cannot write fails the start,
 * and never through a symbolic link. Lines are written synchronously: each is small, and writing
 * in order on the one thread keeps rotation simple (no write can land in a file being renamed).
 */
export class DenialLog {
  private fd: number;
  private size: number;
  private broken = false;

  constructor(
    private readonly path: string,
    private readonly maxBytes: number = defaultLimits.deniedLogMaxBytes,
  ) {
    this.fd = this.open();
    this.size = fstatSync(this.fd).size;
  }

  private open(): number {
    return openSync(
      this.path,
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
      0o600,
    );
  }

  write(line: string): void {
    if (this.broken || this.fd < 0) return;
    try {
      const bytes = Buffer.from(line);
      if (this.size > 0 && this.size + bytes.length > this.maxBytes) {
        closeSync(this.fd);
        this.fd = -1;
        renameSync(this.path, `${this.path}.1`);
        this.fd = this.open();
        this.size = 0;
      }
      writeSync(this.fd, bytes);
      this.size += bytes.length;
    } catch {
      // A full disk or a vanished folder must not take the proxy down; deniedHosts() still counts.
      this.broken = true;
    }
  }

  close(): void {
    this.broken = true;
    if (this.fd < 0) return;
    try {
      closeSync(this.fd);
    } catch {}
    this.fd = -1;
  }
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
