/**
 * Host-side services a bottle reaches over its network: the API forwarder, through which Claude
 * Code inside talks to the Anthropic API (or `anthropic.baseUrl`, which may be a loopback address
 * on the host). Backends start these on an address the bottle can reach (a Docker network's
 * gateway, for instance) and put `env` into the bottle.
 */
import { once } from "node:events";
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";
import type { AddressInfo } from "node:net";
import type { NetworkPolicy } from "./network-policy.js";

export const defaultAnthropicBaseUrl = "https://api.anthropic.com";

export interface HostServicesOptions {
  /** The host address the bottle reaches the host on; the services listen there. */
  bindHost: string;
  /** Where API requests go (anthropic.baseUrl); default https://api.anthropic.com. */
  anthropicBaseUrl?: string;
  /** The agent's real credentials (ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN). */
  secrets: Record<string, string>;
  network: NetworkPolicy;
}

export interface HostServices extends AsyncDisposable {
  /** Environment for inside the bottle: where the API is, and how to reach the network. */
  readonly env: Record<string, string>;
  /** Credentials that still have to go into the bottle. */
  readonly secrets: Record<string, string>;
  /** Hosts the bottle tried to reach and was refused, in order of first refusal. */
  deniedHosts(): string[];
  close(): Promise<void>;
}

export async function startHostServices(options: HostServicesOptions): Promise<HostServices> {
  const upstream = new URL(options.anthropicBaseUrl ?? defaultAnthropicBaseUrl);
  const forwarder = createServer((req, res) => forward(upstream, req, res));
  forwarder.listen(0, options.bindHost);
  await once(forwarder, "listening");
  const { port } = forwarder.address() as AddressInfo;
  const host = options.bindHost.includes(":") ? `[${options.bindHost}]` : options.bindHost;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    forwarder.closeAllConnections();
    await new Promise<void>((resolve) => forwarder.close(() => resolve()));
  };
  return {
    env: { ANTHROPIC_BASE_URL: `http://${host}:${port}${upstream.pathname.replace(/\/$/, "")}` },
    secrets: { ...options.secrets },
    deniedHosts: () => [],
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Pass one request to `upstream` and stream the answer back unchanged (SSE included). */
function forward(upstream: URL, req: IncomingMessage, res: ServerResponse): void {
  const target = new URL(req.url ?? "/", upstream);
  const send = target.protocol === "https:" ? httpsRequest : httpRequest;
  const headers = { ...req.headers, host: target.host };
  const outgoing = send(target, { method: req.method, headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  outgoing.on("error", (error) => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
    res.end(`claude-bottle could not reach ${upstream.origin}: ${error.message}\n`);
  });
  req.pipe(outgoing);
}
