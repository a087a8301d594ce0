/**
 * The API forwarder: Claude Code inside the bottle talks to it (ANTHROPIC_BASE_URL) with a
 * placeholder credential; it passes each request to the configured upstream (`anthropic.baseUrl`,
 * default https://api.anthropic.com) with the real credential put in place of the placeholder,
 * and streams the answer back as it arrives (Server-Sent Events included).
 *
 * Written by hand on node:http because it is small and its rules are ours. A reverse-proxy
 * library would bring routing and rewriting we would then have to switch off. The rules, each
 * against something the agent inside could try:
 *
 * - Only this run's placeholder opens the door. A request is forwarded only when it carries the
 *   per-run placeholder in the header its credential kind uses (`x-api-key` for an API key,
 *   `Authorization: Bearer` for a token), compared in constant time. Anything else that reaches
 *   the forwarder (another bottle, a process on the same network) gets 401 and no credential.
 * - Only what Claude Code needs: the routes in `forwardedRoutes`, matched exactly. The path must
 *   be plain `/segment/segment` (letters, digits, `_`, `-`): no `.` or `..` segments, no percent
 *   escapes (so no `%2e%2e` or `%2f`), no backslashes, no empty segments, no absolute-form
 *   targets. Nothing is decoded or resolved, so what was checked is what the upstream receives.
 *   TRACE, CONNECT, upgrades and every other method are refused.
 * - Every body is framed. A request that may carry a body (POST) goes upstream with exactly its
 *   `content-length`, or chunked when it came chunked. A request with a method that carries no
 *   body (GET, HEAD) is refused if it brings one: Node's client would send such a body unframed,
 *   and on a kept-alive upstream connection those bytes would be read as the start of the next
 *   request, the one that carries the real key (request smuggling).
 * - All requests go to the one upstream origin (host and port are the upstream's; the bottle
 *   supplies only a path, placed behind the upstream's base path).
 * - The key is never reflected: credential headers from inside are dropped before the real one
 *   is added; response headers that hold the key are dropped; response bodies (asked for
 *   uncompressed) have every occurrence of the key blanked as they stream; the forwarder's own
 *   answers are fixed texts or pass through `redact`; nothing is logged. An upstream that
 *   compresses all the same is passed on as it is: its body cannot be scanned.
 */
import { timingSafeEqual } from "node:crypto";
import { once } from "node:events";
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { nodeHttp, nodeHttps } from "@claude-bottle/core/node-builtins";
import { newPlaceholderCredential } from "./bottle-env.js";

/** How the real credential travels: as `x-api-key`, or as `Authorization: Bearer`. */
export type ApiCredential = { kind: "api-key"; value: string } | { kind: "bearer"; value: string };

/**
 * The requests Claude Code makes to ANTHROPIC_BASE_URL. Observed by running the real Claude Code
 * (2.1.332, the version the agent image installs) against the API double and recording every
 * request: `-p` and interactive, with ANTHROPIC_API_KEY and with CLAUDE_CODE_OAUTH_TOKEN, with and
 * without CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC:
 *
 * - `POST /v1/messages?beta=true`: every model turn and side request (titles, the quota check).
 *   Seen in every run.
 * - `HEAD /api/hello`: a connectivity probe of the interactive UI when non-essential traffic is
 *   allowed (network mode `open`). Claude Code sends it without any credential, so it is passed on
 *   without one: no placeholder is asked for and the real credential is not added.
 * - `POST /v1/messages/count_tokens?beta=true`: token counting, which Claude Code's client uses for
 *   context management (not seen in these short runs; the API double answers it for that reason).
 *
 * Everything else (model listing, batches, files, organisation and admin endpoints) is refused
 * with 404, so a placeholder in the bottle can do no more with the user's account than Claude Code
 * itself does. A newer Claude Code that needs another route shows up as a 404 in its own output.
 */
export const forwardedRoutes: readonly ForwardedRoute[] = [
  { method: "POST", path: "/v1/messages", credential: true },
  { method: "POST", path: "/v1/messages/count_tokens", credential: true },
  { method: "HEAD", path: "/api/hello", credential: false },
];

export interface ForwardedRoute {
  method: string;
  path: string;
  /** Whether the route needs the run's placeholder and gets the real credential (false: neither). */
  credential: boolean;
}

export interface ApiForwarderOptions {
  /** The address to listen on (the bottle network's gateway, or 127.0.0.1). */
  host: string;
  /** Port to listen on; default: any free port. */
  port?: number;
  /** Where requests go: an origin with an optional base path, e.g. https://gateway.example/anthropic. */
  upstream: string | URL;
  /** The credential to put on every request; without one, requests keep the credential they carry. */
  credential?: ApiCredential;
  /**
   * The per-run placeholder the bottle holds in place of `credential`; only requests carrying it
   * are forwarded. Default: a fresh one (`newPlaceholderCredential`), readable as `placeholder`.
   * Ignored without `credential` (the bottle then holds its own credential).
   */
  placeholder?: string;
  /** Most connections open at once; more are closed unanswered. Default 256. */
  maxConnections?: number;
  /**
   * Close a connection after this long without a byte either way; default 600 000 (10 min). The
   * API sends pings while a model thinks, so a live answer is never this quiet.
   */
  idleTimeoutMs?: number;
}

export interface ApiForwarder extends AsyncDisposable {
  /** `http://host:port`: the ANTHROPIC_BASE_URL for inside the bottle. */
  readonly url: string;
  readonly port: number;
  /** The placeholder the bottle must send (undefined when the forwarder holds no credential). */
  readonly placeholder: string | undefined;
  close(): Promise<void>;
}

export { newPlaceholderCredential, placeholderApprovalSuffix } from "./bottle-env.js";

/** Headers meant for one connection only (RFC 9110 7.6.1), plus ones we set ourselves. */
const notForwarded = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "expect",
  "host",
  "content-length",
]);
const credentialHeaders = new Set(["x-api-key", "authorization"]);
/** Methods whose requests Node's client sends without framing a body (no chunked default). */
const bodiless = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"]);
/** A path as the routes spell them: `/segment/segment`, nothing to decode or resolve. */
const plainPath = /^(?:\/[A-Za-z0-9_-]+)+$/;
/** A query as Claude Code sends it (`beta=true`): no characters that mean anything to a path. */
const plainQuery = /^[A-Za-z0-9_.~=&+-]*$/;

export async function startApiForwarder(options: ApiForwarderOptions): Promise<ApiForwarder> {
  const upstream = new URL(options.upstream);
  if (upstream.protocol !== "http:" && upstream.protocol !== "https:") {
    throw new TypeError(`the API upstream must be an http(s) URL, not ${upstream.protocol}`);
  }
  const { credential } = options;
  for (const [what, value] of [
    ["credential", credential?.value],
    ["placeholder", options.placeholder],
  ] as const) {
    if (value !== undefined && !/^[\x21-\x7e]+$/.test(value)) {
      // Said without the value: it is a secret, and a header could not carry it anyway.
      throw new TypeError(`the API ${what} contains characters an HTTP header cannot carry`);
    }
  }
  const placeholder = credential ? (options.placeholder ?? newPlaceholderCredential()) : undefined;
  if (credential && placeholder === credential.value) {
    throw new TypeError("the API placeholder must differ from the credential it stands in for");
  }
  const secure = upstream.protocol === "https:";
  const { createServer, Agent: HttpAgent, request: httpRequest } = nodeHttp();
  const { Agent: HttpsAgent, request: httpsRequest } = nodeHttps();
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const basePath = upstream.pathname.replace(/\/+$/, "");
  const redact = (text: string) => (credential ? text.replaceAll(credential.value, "[redacted]") : text);
  const carriesPlaceholder = placeholder ? placeholderCheck(credential!.kind, placeholder) : () => true;

  const server = createServer((req, res) => {
    const { refusal, route } = routeOf(req, carriesPlaceholder);
    if (refusal) {
      // Whatever the bottle sent is left unread; the connection is not reused for another request.
      res.shouldKeepAlive = false;
      answer(res, refusal.status, refusal.type, refusal.message);
      return;
    }
    const send = secure ? httpsRequest : httpRequest;
    const method = req.method!;
    const headers = forwardedHeaders(req, upstream.host, credential, route.credential);
    if (!bodiless.has(method)) {
      // Framed as it came: the exact length, or chunked (Node's client chunks a POST it has no length for).
      if (req.headers["content-length"] !== undefined)
        headers["content-length"] = req.headers["content-length"];
      else if (req.headers["transfer-encoding"] !== undefined) headers["transfer-encoding"] = "chunked";
      else headers["content-length"] = "0";
    }
    const outgoing = send(
      {
        // The upstream's host and port, and the path as checked, behind the base path.
        hostname: upstream.hostname.replace(/^\[|\]$/g, ""),
        port: upstream.port,
        path: `${basePath}${req.url}`,
        method,
        headers,
        agent,
      },
      (reply) => {
        res.writeHead(reply.statusCode ?? 502, reply.statusMessage, responseHeaders(reply, credential));
        res.flushHeaders();
        const scanned = credential && route.credential && !isEncoded(reply);
        const body = scanned ? [reply, redactingStream(credential.value), res] : [reply, res];
        pipeline(body).catch(() => res.destroy());
      },
    );
    outgoing.on("error", (error) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      answer(
        res,
        502,
        "api_error",
        redact(`claude-bottle could not reach ${upstream.origin}: ${error.message}`),
      );
    });
    res.on("close", () => {
      if (!res.writableFinished) outgoing.destroy();
    });
    if (bodiless.has(method)) {
      outgoing.end();
      req.resume();
    } else pipeline(req, outgoing).catch(() => outgoing.destroy());
  });
  // CONNECT and upgrades have no listener here: Node closes those connections unanswered.
  server.maxConnections = options.maxConnections ?? 256;
  // Without a 'timeout' listener, Node destroys a socket that stays idle this long.
  server.timeout = options.idleTimeoutMs ?? 600_000;
  server.listen(options.port ?? 0, options.host);
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    agent.destroy();
    await stopped;
  };
  const urlHost = options.host.includes(":") ? `[${options.host}]` : options.host;
  return { url: `http://${urlHost}:${port}`, port, placeholder, close, [Symbol.asyncDispose]: close };
}

interface Refusal {
  status: number;
  /** The API's error type, so that Claude Code shows the message as it shows the API's own. */
  type: string;
  message: string;
}

const refuse = (refusal: Refusal) => ({ refusal });

/** The route a request takes, or why it is not forwarded. A refusal never mentions header values. */
function routeOf(
  req: IncomingMessage,
  carriesPlaceholder: (req: IncomingMessage) => boolean,
): { refusal: Refusal; route?: undefined } | { refusal?: undefined; route: ForwardedRoute } {
  const target = req.url ?? "";
  const method = req.method ?? "";
  if (!target.startsWith("/")) {
    return refuse({
      status: 400,
      type: "invalid_request_error",
      message: "claude-bottle's API forwarder takes request paths only, not URLs",
    });
  }
  const queryAt = target.indexOf("?");
  const path = queryAt === -1 ? target : target.slice(0, queryAt);
  const query = queryAt === -1 ? "" : target.slice(queryAt + 1);
  if (!plainPath.test(path) || !plainQuery.test(query)) {
    return refuse({
      status: 400,
      type: "invalid_request_error",
      message: "claude-bottle's API forwarder refuses this request path",
    });
  }
  const routes = forwardedRoutes.filter((route) => route.path === path);
  if (routes.length === 0) {
    return refuse({
      status: 404,
      type: "not_found_error",
      message: `claude-bottle's API forwarder does not forward ${path}`,
    });
  }
  const route = routes.find((candidate) => candidate.method === method);
  if (!route) {
    return refuse({
      status: 405,
      type: "invalid_request_error",
      message: `claude-bottle's API forwarder does not forward ${method} ${path}`,
    });
  }
  if (bodiless.has(method) && hasBody(req)) {
    return refuse({
      status: 400,
      type: "invalid_request_error",
      message: `claude-bottle's API forwarder refuses a ${method} request with a body`,
    });
  }
  if (route.credential && !carriesPlaceholder(req)) {
    return refuse({
      status: 401,
      type: "authentication_error",
      message: "claude-bottle's API forwarder: this request does not carry this run's placeholder credential",
    });
  }
  return { route };
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

/** Whether a request carries `placeholder` the way a credential of `kind` travels. */
function placeholderCheck(
  kind: ApiCredential["kind"],
  placeholder: string,
): (req: IncomingMessage) => boolean {
  const expected = Buffer.from(kind === "api-key" ? placeholder : `Bearer ${placeholder}`);
  return (req) => {
    const value = kind === "api-key" ? req.headers["x-api-key"] : req.headers.authorization;
    if (typeof value !== "string") return false;
    const given = Buffer.from(value);
    return given.length === expected.length && timingSafeEqual(given, expected);
  };
}

/** The request's headers for the upstream; the real credential only on a route that takes one. */
function forwardedHeaders(
  req: IncomingMessage,
  upstreamHost: string,
  credential: ApiCredential | undefined,
  routeTakesCredential: boolean,
): OutgoingHttpHeaders {
  const named = new Set(
    (req.headers.connection ?? "")
      .split(",")
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
  );
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || notForwarded.has(name) || named.has(name)) continue;
    if (credential && credentialHeaders.has(name)) continue;
    headers[name] = value;
  }
  headers.host = upstreamHost;
  if (!routeTakesCredential) return headers;
  // Answers come back uncompressed, so that the forwarder can see (and blank) the key in them.
  if (credential) headers["accept-encoding"] = "identity";
  if (credential?.kind === "api-key") headers["x-api-key"] = credential.value;
  if (credential?.kind === "bearer") headers.authorization = `Bearer ${credential.value}`;
  return headers;
}

function responseHeaders(reply: IncomingMessage, credential: ApiCredential | undefined): string[] {
  const named = new Set(
    String(reply.headers.connection ?? "")
      .split(",")
      .map((name) => name.trim().toLowerCase()),
  );
  const kept: string[] = [];
  for (let i = 0; i < reply.rawHeaders.length; i += 2) {
    const name = reply.rawHeaders[i]!;
    const value = reply.rawHeaders[i + 1]!;
    const lower = name.toLowerCase();
    if (notForwarded.has(lower) || named.has(lower)) continue;
    // An upstream (a gateway, say) that echoes request headers must not hand the key to the bottle.
    if (credential && value.includes(credential.value)) continue;
    kept.push(name, value);
  }
  // The reply's own framing is Node's to set again (chunked or the length it came with).
  if (reply.headers["content-length"] !== undefined)
    kept.push("content-length", reply.headers["content-length"]);
  return kept;
}

/** An answer of the forwarder's own, in the shape of the API's errors so Claude Code shows the message. */
function answer(res: ServerResponse, status: number, type: string, message: string): void {
  const text = `${JSON.stringify({ type: "error", error: { type, message } })}\n`;
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

function isEncoded(reply: IncomingMessage): boolean {
  const encoding = String(reply.headers["content-encoding"] ?? "identity")
    .trim()
    .toLowerCase();
  return encoding !== "" && encoding !== "identity";
}

/**
 * A stream that replaces every occurrence of `secret` with as many `*` (so lengths stay right).
 * It holds back only a tail that could be the start of the secret, so Server-Sent Events, which
 * end in blank lines, pass through at once.
 */
export function redactingStream(secret: string): Transform {
  const needle = Buffer.from(secret);
  const blank = Buffer.alloc(needle.length, "*");
  let held = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      let data = Buffer.concat([held, chunk]);
      for (let at = data.indexOf(needle); at !== -1; at = data.indexOf(needle, at + needle.length)) {
        blank.copy(data, at);
      }
      // Hold back the longest tail that is a start of the secret; it may complete in the next chunk.
      let keep = Math.min(needle.length - 1, data.length);
      while (keep > 0 && !data.subarray(data.length - keep).equals(needle.subarray(0, keep))) keep -= 1;
      held = Buffer.from(data.subarray(data.length - keep));
      data = data.subarray(0, data.length - keep);
      done(null, data);
    },
    flush(done) {
      done(null, held);
    },
  });
}
