/**
 * The API forwarder between a client standing in for Claude Code and a double of the Anthropic API,
 * both on 127.0.0.1. The double records each request as it arrived (headers, path, body) and
 * answers the way the Messages API does: JSON, or Server-Sent Events for `"stream": true`.
 */
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, request, type Server, type ServerResponse } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type ApiForwarder,
  forwardedRoutes,
  newPlaceholderCredential,
  placeholderApprovalSuffix,
  startApiForwarder,
} from "./api-forwarder.js";

const realKey = "sk-ant-api03-REAL-KEY-that-must-stay-on-the-host";
/** This run's placeholder, as the bottle holds it. */
const placeholder = newPlaceholderCredential();

interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

/** The Anthropic API double: what reached it, and how it answers. */
let api: Server;
let apiPort: number;
let received: Received[];
let respond: (res: ServerResponse, req: Received) => void;

beforeEach(async () => {
  received = [];
  respond = (res) => {
    res.writeHead(200, { "content-type": "application/json", "request-id": "req_double" });
    res.end('{"type":"message","content":[]}');
  };
  api = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const entry = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: Buffer.concat(chunks).toString(),
    };
    received.push(entry);
    respond(res, entry);
  });
  api.listen(0, "127.0.0.1");
  await once(api, "listening");
  apiPort = (api.address() as AddressInfo).port;
});

const forwarders: ApiForwarder[] = [];
afterEach(async () => {
  await Promise.all(forwarders.splice(0).map((forwarder) => forwarder.close()));
  api.closeAllConnections();
  await new Promise((resolve) => api.close(resolve));
});

async function forwarder(options: Partial<Parameters<typeof startApiForwarder>[0]> = {}) {
  const started = await startApiForwarder({
    host: "127.0.0.1",
    upstream: `http://127.0.0.1:${apiPort}`,
    credential: { kind: "api-key", value: realKey },
    placeholder,
    ...options,
  });
  forwarders.push(started);
  return started;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** What Claude Code in the bottle does: a request to ANTHROPIC_BASE_URL with whatever it holds. */
async function call(
  base: string,
  path: string,
  {
    method = "POST",
    headers = { "x-api-key": placeholder },
    body = "",
  }: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  const { hostname, port } = new URL(base);
  const req = request({ hostname, port, path, method, headers });
  req.end(body);
  const [res] = (await once(req, "response")) as [import("node:http").IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() };
}

const messagesBody = JSON.stringify({
  model: "claude-x",
  max_tokens: 16,
  messages: [{ role: "user", content: "hi" }],
});

describe("API forwarder: credentials", () => {
  it("puts the real API key on the request in place of the placeholder", async () => {
    const { url } = await forwarder();
    const reply = await call(url, "/v1/messages?beta=true", {
      headers: { "x-api-key": placeholder, "content-type": "application/json" },
      body: messagesBody,
    });
    expect(reply.status).toBe(200);
    expect(reply.body).toBe('{"type":"message","content":[]}');
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ method: "POST", url: "/v1/messages?beta=true", body: messagesBody });
    expect(received[0]?.headers["x-api-key"]).toBe(realKey);
    expect(received[0]?.headers.authorization).toBeUndefined();
    expect(received[0]?.headers.host).toBe(`127.0.0.1:${apiPort}`);
  });

  it("drops credentials the bottle sends (an attacker's own key) and sends only the user's", async () => {
    const { url } = await forwarder();
    await call(url, "/v1/messages", {
      headers: { "x-api-key": placeholder, authorization: "Bearer sk-ant-attacker" },
      body: messagesBody,
    });
    const names = received[0]!.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
    expect(names.filter((name) => name === "x-api-key" || name === "authorization")).toEqual(["x-api-key"]);
    expect(received[0]?.headers["x-api-key"]).toBe(realKey);
    expect(JSON.stringify(received[0]?.rawHeaders)).not.toContain("attacker");
  });

  it("sends an OAuth token as a bearer token and no API key", async () => {
    const { url } = await forwarder({ credential: { kind: "bearer", value: "sk-ant-oat01-REAL" } });
    await call(url, "/v1/messages", {
      headers: { authorization: `Bearer ${placeholder}`, "x-api-key": "leftover" },
      body: messagesBody,
    });
    expect(received[0]?.headers.authorization).toBe("Bearer sk-ant-oat01-REAL");
    expect(received[0]?.headers["x-api-key"]).toBeUndefined();
  });

  it("passes the bottle's own credential on untouched when it holds none (passthrough)", async () => {
    const { url } = await forwarder({ credential: undefined });
    await call(url, "/v1/messages", { headers: { "x-api-key": "key-from-inside" }, body: messagesBody });
    expect(received[0]?.headers["x-api-key"]).toBe("key-from-inside");
  });

  it("refuses a credential that no header could carry, without printing it", async () => {
    const attempt = startApiForwarder({
      host: "127.0.0.1",
      upstream: `http://127.0.0.1:${apiPort}`,
      credential: { kind: "api-key", value: "sk-secret\nInjected: yes" },
    });
    await expect(attempt).rejects.toThrow(/characters an HTTP header cannot carry/);
    await expect(attempt).rejects.not.toThrow(/sk-secret/);
  });
});

describe("API forwarder: where requests go", () => {
  it("keeps the upstream's base path in front of every request path", async () => {
    const { url } = await forwarder({ upstream: `http://127.0.0.1:${apiPort}/gateway/anthropic/` });
    await call(url, "/v1/messages?beta=true", { body: messagesBody });
    expect(received[0]?.url).toBe("/gateway/anthropic/v1/messages?beta=true");
  });

  it("refuses paths that are not plain, before any credential is looked at: traversal, escapes, other hosts", async () => {
    const { url } = await forwarder();
    const paths = [
      "//evil.test/v1/messages",
      "/v1/../v1/messages",
      "/v1/./messages",
      "/v1/%2e%2e/v1/messages",
      "/v1/%2E%2E/messages",
      "/v1%2fmessages",
      "/v1/messages%00",
      "/v1//messages",
      "/v1/messages/",
      "/@evil.test/v1/messages",
      "/\\evil.test/v1/messages",
      "/v1/messages;x=1",
      "/v1/messages?x=/../admin",
      "/v1/messages?x=%2e%2e",
    ];
    for (const path of paths) {
      const reply = await call(url, path, { body: messagesBody });
      expect(reply.status, path).toBe(400);
      expect(JSON.parse(reply.body).error.type, path).toBe("invalid_request_error");
    }
    expect(received).toEqual([]);
  });

  it("forwards only the routes Claude Code uses, with their methods, and answers others itself", async () => {
    const { url } = await forwarder();
    const refused: [string, string, number][] = [
      ["GET", "/v1/models", 404],
      ["POST", "/v1/files", 404],
      ["POST", "/v1/messages/batches", 404],
      ["GET", "/v1/organizations/me", 404],
      ["POST", "/v1/complete", 404],
      ["GET", "/v1/messages", 405],
      ["DELETE", "/v1/messages", 405],
      ["PUT", "/v1/messages", 405],
      ["OPTIONS", "/v1/messages", 405],
      ["TRACE", "/v1/messages", 405],
      ["POST", "/api/hello", 405],
    ];
    for (const [method, path, status] of refused) {
      const reply = await call(url, path, { method });
      expect(reply.status, `${method} ${path}`).toBe(status);
    }
    expect(received).toEqual([]);
    for (const { method, path } of forwardedRoutes) {
      expect((await call(url, path, { method, ...(method === "POST" && { body: "{}" }) })).status).toBe(200);
    }
    expect(received.map(({ method, url: path }) => `${method} ${path}`)).toEqual(
      forwardedRoutes.map(({ method, path }) => `${method} ${path}`),
    );
  });

  it("closes a CONNECT or an upgrade without forwarding it", async () => {
    const { port } = await forwarder();
    for (const head of [
      `CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\nx-api-key: ${placeholder}\r\n\r\n`,
      `GET /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nx-api-key: ${placeholder}\r\n\r\n`,
    ]) {
      const text = await rawExchange(port, head);
      expect(text).not.toMatch(/^HTTP\/1\.1 2/);
    }
    expect(received).toEqual([]);
  });

  it("refuses absolute-form and malformed request targets", async () => {
    const { port } = await forwarder();
    for (const target of ["http://evil.test/v1/messages", "evil.test:443", "*", "evil.test/v1/messages"]) {
      const text = await rawExchange(
        port,
        `POST ${target} HTTP/1.1\r\nHost: evil.test\r\nx-api-key: ${placeholder}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
      );
      expect(text, target).toMatch(/^HTTP\/1\.1 400/);
    }
    expect(received).toEqual([]);
  });
});

describe("API forwarder: answers", () => {
  it("passes status, headers and body back, without hop-by-hop headers", async () => {
    respond = (res) => {
      res.writeHead(429, {
        "retry-after": "7",
        "anthropic-ratelimit-requests-remaining": "0",
        "x-secret-hop": "only for the next hop",
        connection: "x-secret-hop",
        "content-type": "application/json",
      });
      res.end('{"type":"error","error":{"type":"rate_limit_error"}}');
    };
    const { url } = await forwarder();
    const reply = await call(url, "/v1/messages", { body: messagesBody });
    expect(reply.status).toBe(429);
    expect(reply.headers["retry-after"]).toBe("7");
    expect(reply.headers["anthropic-ratelimit-requests-remaining"]).toBe("0");
    expect(reply.headers["x-secret-hop"]).toBeUndefined();
    expect(reply.body).toContain("rate_limit_error");
  });

  it("does not pass hop-by-hop request headers on", async () => {
    const { url } = await forwarder();
    await call(url, "/v1/messages", {
      headers: {
        "x-api-key": placeholder,
        connection: "x-hop",
        "x-hop": "1",
        "proxy-authorization": "Basic eA==",
        "anthropic-version": "2023-06-01",
      },
      body: messagesBody,
    });
    expect(received[0]?.headers["x-hop"]).toBeUndefined();
    expect(received[0]?.headers["proxy-authorization"]).toBeUndefined();
    expect(received[0]?.headers["anthropic-version"]).toBe("2023-06-01");
  });

  it("streams large request and response bodies through unchanged", async () => {
    const big = "x".repeat(4 * 1024 * 1024);
    respond = (res, req) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(req.body.split("").reverse().join("").slice(0, 10) + big);
    };
    const { url } = await forwarder();
    const reply = await call(url, "/v1/messages", { body: `${big}end` });
    expect(received[0]?.body.length).toBe(big.length + 3);
    expect(reply.body.length).toBe(big.length + 10);
    expect(reply.body.startsWith("dnexxxxxxx")).toBe(true);
  });

  it("streams Server-Sent Events event by event: the first arrives before the upstream is done", async () => {
    let firstEventSeen!: () => void;
    const seenByClient = new Promise<void>((resolve) => {
      firstEventSeen = resolve;
    });
    let upstreamFinishedBeforeFirstEventArrived: boolean | undefined;
    respond = async (res) => {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write('event: message_start\ndata: {"type":"message_start"}\n\n');
      // The rest comes only once the client has the first event, or after 3 s if it never does.
      const waited = await Promise.race([
        seenByClient.then(() => "seen"),
        new Promise((resolve) => setTimeout(() => resolve("timeout"), 3000)),
      ]);
      upstreamFinishedBeforeFirstEventArrived = waited === "timeout";
      res.write('event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n');
      res.end('event: message_stop\ndata: {"type":"message_stop"}\n\n');
    };
    const { url } = await forwarder();
    const req = request(`${url}/v1/messages?beta=true`, {
      method: "POST",
      headers: { "x-api-key": placeholder },
    });
    req.end(JSON.stringify({ stream: true }));
    const [res] = (await once(req, "response")) as [import("node:http").IncomingMessage];
    expect(res.headers["content-type"]).toBe("text/event-stream");
    let text = "";
    for await (const chunk of res) {
      text += (chunk as Buffer).toString();
      if (text.includes("message_start")) firstEventSeen();
    }
    expect(upstreamFinishedBeforeFirstEventArrived).toBe(false);
    expect(text).toBe(
      'event: message_start\ndata: {"type":"message_start"}\n\n' +
        'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n' +
        'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    );
  });

  it("passes the response head on as soon as the upstream sends it, before any body", async () => {
    let headSeen!: () => void;
    const seenByClient = new Promise<string>((resolve) => {
      headSeen = () => resolve("seen");
    });
    let waited: string | undefined;
    respond = async (res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.flushHeaders();
      waited = await Promise.race([
        seenByClient,
        new Promise<string>((r) => setTimeout(() => r("timeout"), 3000)),
      ]);
      res.end("event: message_stop\ndata: {}\n\n");
    };
    const { url } = await forwarder();
    const req = request(`${url}/v1/messages`, { method: "POST", headers: { "x-api-key": placeholder } });
    req.end("{}");
    const [res] = (await once(req, "response")) as [import("node:http").IncomingMessage];
    headSeen();
    res.resume();
    await once(res, "end");
    expect(waited).toBe("seen");
  });

  it("stops the upstream request when the bottle hangs up mid-stream", async () => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((resolve) => {
      upstreamClosed = resolve;
    });
    respond = (res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("event: ping\ndata: {}\n\n");
      res.on("close", () => upstreamClosed());
    };
    const { url } = await forwarder();
    const req = request(`${url}/v1/messages`, { method: "POST", headers: { "x-api-key": placeholder } });
    req.end("{}");
    const [res] = (await once(req, "response")) as [import("node:http").IncomingMessage];
    await once(res, "data");
    req.destroy();
    await expect(
      Promise.race([closed, new Promise((_, reject) => setTimeout(reject, 3000))]),
    ).resolves.toBeUndefined();
  });

  it("answers 502 naming the upstream, never the key, when the upstream cannot be reached", async () => {
    const gone = createServer();
    gone.listen(0, "127.0.0.1");
    await once(gone, "listening");
    const port = (gone.address() as AddressInfo).port;
    await new Promise((resolve) => gone.close(resolve));
    const { url } = await forwarder({ upstream: `http://127.0.0.1:${port}` });
    const reply = await call(url, "/v1/messages", { body: messagesBody });
    expect(reply.status).toBe(502);
    expect(reply.body).toContain(`could not reach http://127.0.0.1:${port}`);
    expect(reply.body).not.toContain(realKey);
  });
});

/** Write `text` to the forwarder as it is; what comes back until it closes (bounded by 5 s). */
async function rawExchange(port: number, text: string): Promise<string> {
  const socket = connect(port, "127.0.0.1");
  socket.setTimeout(5000, () => socket.destroy());
  socket.on("error", () => {});
  socket.write(text);
  let answer = "";
  socket.on("data", (chunk: Buffer) => {
    answer += chunk.toString("latin1");
  });
  await once(socket, "close");
  return answer;
}

describe("API forwarder: only this run's placeholder opens it", () => {
  it("refuses requests without the placeholder, or with another value, and the upstream sees none of them", async () => {
    const { url } = await forwarder();
    const attempts: Record<string, string>[] = [
      {},
      { "x-api-key": "claude-bottle-placeholder-api-key" },
      { "x-api-key": newPlaceholderCredential() },
      { "x-api-key": `${placeholder}x` },
      { "x-api-key": realKey },
      { authorization: `Bearer ${placeholder}` },
    ];
    for (const headers of attempts) {
      const reply = await call(url, "/v1/messages", { headers, body: messagesBody });
      expect(reply.status, JSON.stringify(headers)).toBe(401);
      expect(JSON.parse(reply.body).error.type).toBe("authentication_error");
      expect(reply.body).not.toContain(placeholder);
      expect(reply.body).not.toContain(realKey);
    }
    expect(received).toEqual([]);
  });

  it("passes Claude Code's connectivity probe (HEAD /api/hello) on without any credential, real or not", async () => {
    const { url } = await forwarder();
    expect((await call(url, "/api/hello", { method: "HEAD", headers: {} })).status).toBe(200);
    expect((await call(url, "/api/hello", { method: "HEAD" })).status).toBe(200);
    expect(received.map(({ method, url: path }) => `${method} ${path}`)).toEqual([
      "HEAD /api/hello",
      "HEAD /api/hello",
    ]);
    for (const entry of received) {
      expect(entry.headers["x-api-key"]).toBeUndefined();
      expect(entry.headers.authorization).toBeUndefined();
    }
  });

  it("wants a bearer placeholder as Authorization: Bearer when the credential is a token", async () => {
    const { url } = await forwarder({ credential: { kind: "bearer", value: "sk-ant-oat01-REAL" } });
    expect((await call(url, "/v1/messages", { body: messagesBody })).status).toBe(401);
    expect(
      (
        await call(url, "/v1/messages", {
          headers: { authorization: `Bearer ${placeholder}` },
          body: messagesBody,
        })
      ).status,
    ).toBe(200);
    expect(received).toHaveLength(1);
  });

  it("makes a new placeholder for each forwarder when none is given, ending in the approval suffix", async () => {
    const first = await forwarder({ placeholder: undefined });
    const second = await forwarder({ placeholder: undefined });
    expect(first.placeholder).toMatch(/^claude-bottle-placeholder-[A-Za-z0-9_-]{43}-placeholder-api-key$/);
    expect(first.placeholder).not.toBe(second.placeholder);
    expect(first.placeholder!.slice(-20)).toBe(placeholderApprovalSuffix);
    expect((await call(first.url, "/v1/messages", { body: messagesBody })).status).toBe(401);
    expect(
      (
        await call(first.url, "/v1/messages", {
          headers: { "x-api-key": first.placeholder! },
          body: messagesBody,
        })
      ).status,
    ).toBe(200);
  });
});

describe("API forwarder: bodies are framed, never smuggled", () => {
  it("refuses a HEAD with a chunked body that hides a second request, and the upstream sees nothing", async () => {
    const { port } = await forwarder();
    const smuggled = `POST /v1/messages HTTP/1.1\r\nHost: attacker.test\r\nContent-Length: 400\r\n\r\n`;
    const text = await rawExchange(
      port,
      `HEAD /api/hello HTTP/1.1\r\nHost: x\r\nx-api-key: ${placeholder}\r\nTransfer-Encoding: chunked\r\n\r\n` +
        `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`,
    );
    expect(text).toMatch(/^HTTP\/1\.1 400/);
    expect(received).toEqual([]);
  });

  it("refuses a HEAD with a content-length body", async () => {
    const { port } = await forwarder();
    const text = await rawExchange(
      port,
      `HEAD /api/hello HTTP/1.1\r\nHost: x\r\nx-api-key: ${placeholder}\r\nContent-Length: 5\r\n\r\nhello`,
    );
    expect(text).toMatch(/^HTTP\/1\.1 400/);
    expect(received).toEqual([]);
  });

  it("passes a chunked POST on chunked, and the next request on the same upstream connection stays its own", async () => {
    const { port } = await forwarder();
    const body = '{"messages":[]}';
    const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const head = (extra: string) =>
      `POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: ${placeholder}\r\n${extra}\r\n`;
    const text = await rawExchange(
      port,
      `${head("Transfer-Encoding: chunked\r\n")}${chunked}${head(`Content-Length: 2\r\nConnection: close\r\n`)}{}`,
    );
    expect(text.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
    expect(received.map(({ body: seen }) => seen)).toEqual([body, "{}"]);
    expect(received[0]?.headers["transfer-encoding"]).toBe("chunked");
    expect(received[1]?.headers["content-length"]).toBe("2");
    for (const entry of received) expect(entry.headers["x-api-key"]).toBe(realKey);
  });
});

describe("API forwarder: the key is never reflected", () => {
  it("blanks the key in a response body that echoes it, also split across chunks, keeping the length", async () => {
    respond = async (res, req) => {
      const key = String(req.headers["x-api-key"]);
      const text = `{"error":"invalid key ${key}","again":"${key}"}`;
      res.writeHead(401, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      // The key arrives in pieces, as a slow upstream would send it.
      for (const piece of [text.slice(0, 30), text.slice(30, 45), text.slice(45, 90), text.slice(90)]) {
        res.write(piece);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      res.end();
    };
    const { url } = await forwarder();
    const reply = await call(url, "/v1/messages", { body: messagesBody });
    expect(reply.status).toBe(401);
    expect(reply.body).not.toContain(realKey);
    expect(reply.body).toBe(
      `{"error":"invalid key ${"*".repeat(realKey.length)}","again":"${"*".repeat(realKey.length)}"}`,
    );
    expect(received[0]?.headers["accept-encoding"]).toBe("identity");
  });

  it("drops response headers that echo the key", async () => {
    respond = (res, req) => {
      res.writeHead(200, { "x-echo": `got ${req.headers["x-api-key"]}`, "x-fine": "1" });
      res.end("{}");
    };
    const { url } = await forwarder();
    const reply = await call(url, "/v1/messages", { body: messagesBody });
    expect(reply.headers["x-echo"]).toBeUndefined();
    expect(reply.headers["x-fine"]).toBe("1");
    expect(JSON.stringify(reply.headers)).not.toContain(realKey);
  });
});

describe("API forwarder: limits", () => {
  it("closes a connection that stays idle longer than the idle timeout", async () => {
    const { port } = await forwarder({ idleTimeoutMs: 300 });
    const socket = connect(port, "127.0.0.1");
    socket.resume();
    const started = Date.now();
    await once(socket, "close");
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("closes connections beyond maxConnections unanswered", async () => {
    const { port } = await forwarder({ maxConnections: 1 });
    const first = connect(port, "127.0.0.1");
    await once(first, "connect");
    await new Promise((resolve) => setTimeout(resolve, 50));
    const text = await rawExchange(port, `HEAD /api/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(text).toBe("");
    first.destroy();
  });
});
