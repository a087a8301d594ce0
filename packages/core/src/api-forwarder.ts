/**
 * The API forwarder: Claude Code inside the bottle talks to it (ANTHROPIC_BASE_URL) with a
 * placeholder credential; it passes each request to the configured upstream (`anthropic.baseUrl`,
 * default https://api.anthropic.com) with the real credential put in place of whatever the
 * request carried, and streams the answer back as it arrives (Server-Sent Events included).
 *
 * Written by hand on node:http because it is small and its rules are ours: every request goes to
 * the one upstream origin and nowhere else (host and port are the upstream's, the bottle supplies
 * only a path, which is never resolved against anything), credential headers from inside are
 * dropped before the real one is added, hop-by-hop headers are not passed on, and bodies are piped
 * both ways untouched. A reverse-proxy library would bring routing and rewriting we would then
 * have to switch off. The real credential lives only in this process: it is never logged, and
 * error text sent back to the bottle passes through `redact` first.
 */
import { once } from "node:events";
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { pipeline } from "node:stream/promises";
import { nodeHttp, nodeHttps } from "./node-http.js";

/** How the real credential travels: as `x-api-key`, or as `Authorization: Bearer`. */
export type ApiCredential = { kind: "api-key"; value: string } | { kind: "bearer"; value: string };

export interface ApiForwarderOptions {
  /** The address to listen on (the bottle network's gateway, or 127.0.0.1). */
  host: string;
  /** Port to listen on; default: any free port. */
  port?: number;
  /** Where requests go: an origin with an optional base path, e.g. https://gateway.example/anthropic. */
  upstream: string | URL;
  /** The credential to put on every request; without one, requests keep the credential they carry. */
  credential?: ApiCredential;
}

export interface ApiForwarder extends AsyncDisposable {
  /** `http://host:port`: the ANTHROPIC_BASE_URL for inside the bottle. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

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
]);
const credentialHeaders = new Set(["x-api-key", "authorization"]);

export async function startApiForwarder(options: ApiForwarderOptions): Promise<ApiForwarder> {
  const upstream = new URL(options.upstream);
  if (upstream.protocol !== "http:" && upstream.protocol !== "https:") {
    throw new TypeError(`the API upstream must be an http(s) URL, not ${upstream.protocol}`);
  }
  const { credential } = options;
  if (credential && !/^[\x21-\x7e]+$/.test(credential.value)) {
    // Said without the value: it is a secret, and a header could not carry it anyway.
    throw new TypeError("the API credential contains characters an HTTP header cannot carry");
  }
  const secure = upstream.protocol === "https:";
  const { createServer, Agent: HttpAgent, request: httpRequest } = nodeHttp();
  const { Agent: HttpsAgent, request: httpsRequest } = nodeHttps();
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const basePath = upstream.pathname.replace(/\/+$/, "");
  const redact = (text: string) => (credential ? text.replaceAll(credential.value, "[redacted]") : text);

  const server = createServer((req, res) => {
    const path = req.url ?? "";
    if (!path.startsWith("/")) {
      answer(res, 400, "claude-bottle's API forwarder takes request paths only, not URLs\n");
      return;
    }
    const send = secure ? httpsRequest : httpRequest;
    const outgoing = send(
      {
        // The upstream's host and port, and the path exactly as the bottle sent it, behind the base path.
        hostname: upstream.hostname.replace(/^\[|\]$/g, ""),
        port: upstream.port,
        path: `${basePath}${path}`,
        method: req.method,
        headers: forwardedHeaders(req, upstream.host, credential),
        agent,
      },
      (reply) => {
        res.writeHead(reply.statusCode ?? 502, reply.statusMessage, responseHeaders(reply));
        res.flushHeaders();
        pipeline(reply, res).catch(() => res.destroy());
      },
    );
    outgoing.on("error", (error) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      answer(res, 502, redact(`claude-bottle could not reach ${upstream.origin}: ${error.message}\n`));
    });
    res.on("close", () => {
      if (!res.writableFinished) outgoing.destroy();
    });
    pipeline(req, outgoing).catch(() => outgoing.destroy());
  });
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
  return { url: `http://${urlHost}:${port}`, port, close, [Symbol.asyncDispose]: close };
}

function forwardedHeaders(
  req: IncomingMessage,
  upstreamHost: string,
  credential: ApiCredential | undefined,
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
  if (credential?.kind === "api-key") headers["x-api-key"] = credential.value;
  if (credential?.kind === "bearer") headers.authorization = `Bearer ${credential.value}`;
  return headers;
}

function responseHeaders(reply: IncomingMessage): string[] {
  const named = new Set(
    String(reply.headers.connection ?? "")
      .split(",")
      .map((name) => name.trim().toLowerCase()),
  );
  const kept: string[] = [];
  for (let i = 0; i < reply.rawHeaders.length; i += 2) {
    const name = reply.rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (!notForwarded.has(lower) && !named.has(lower)) kept.push(name, reply.rawHeaders[i + 1]!);
  }
  return kept;
}

function answer(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}
