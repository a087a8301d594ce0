/**
 * The host services as a backend uses them: start them, hand `env` and `secrets` to a stand-in for
 * the bottle, and look at what reaches a double of the Anthropic API and what the proxy refuses.
 * Everything listens on 127.0.0.1.
 */
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
} from "node:http";
import { type AddressInfo, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BottleError } from "@claude-bottle/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type HostServices,
  type HostServicesOptions,
  preloadHostServices,
  startHostServices,
} from "./host-services.js";

const realKey = "sk-ant-api03-REAL-host-only-key";
const realOAuth = "sk-ant-oat01-REAL-host-only-token";

let api: Server;
let apiUrl: string;
let received: IncomingHttpHeaders[];

beforeEach(async () => {
  received = [];
  api = createServer((req, res) => {
    received.push(req.headers);
    req.resume();
    res.writeHead(200, { "content-type": "application/json" });
    res.end("{}");
  });
  api.listen(0, "127.0.0.1");
  await once(api, "listening");
  apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
});

const started: HostServices[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((services) => services.close()));
  api.closeAllConnections();
  await new Promise((resolve) => api.close(resolve));
});

async function services(options: Partial<HostServicesOptions> = {}) {
  const running = await startHostServices({
    bindHost: "127.0.0.1",
    anthropicBaseUrl: apiUrl,
    secrets: { ANTHROPIC_API_KEY: realKey },
    network: { mode: "allowlist", allow: ["allowed.test"] },
    // No test here connects anywhere but loopback: a name that got this far resolves to nothing.
    resolve: async () => [],
    ...options,
  });
  started.push(running);
  return running;
}

/** Claude Code in the bottle: it knows only its environment. */
async function claudeCall(env: Record<string, string>): Promise<number> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (env.ANTHROPIC_API_KEY) headers["x-api-key"] = env.ANTHROPIC_API_KEY;
  const bearer = env.ANTHROPIC_AUTH_TOKEN ?? env.CLAUDE_CODE_OAUTH_TOKEN;
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const req = request(`${env.ANTHROPIC_BASE_URL}/v1/messages?beta=true`, { method: "POST", headers });
  req.end('{"stream":true}');
  const [res] = (await once(req, "response")) as [IncomingMessage];
  res.resume();
  await once(res, "end");
  return res.statusCode ?? 0;
}

async function connectThrough(proxyUrl: string, authority: string): Promise<number> {
  const { port } = new URL(proxyUrl);
  const socket = connect(Number(port), "127.0.0.1");
  socket.setTimeout(5000, () => socket.destroy());
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  const [chunk] = (await once(socket, "data")) as [Buffer];
  socket.destroy();
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(chunk.toString())?.[1]);
}

describe("host services: the credential stays on the host", () => {
  it("gives the bottle a placeholder API key, and the real one reaches the API", async () => {
    const running = await services();
    expect(running.env.ANTHROPIC_API_KEY).toMatch(
      /^claude-bottle-placeholder-[\w-]{43}-placeholder-api-key$/,
    );
    expect(JSON.stringify(running.env)).not.toContain(realKey);
    expect(running.secrets).toEqual({});
    expect(running.env.ANTHROPIC_BASE_URL).toBe(running.apiUrl);
    expect(await claudeCall(running.env)).toBe(200);
    expect(received[0]?.["x-api-key"]).toBe(realKey);
  });

  it("gives a placeholder OAuth token when the host has only CLAUDE_CODE_OAUTH_TOKEN", async () => {
    const running = await services({ secrets: { CLAUDE_CODE_OAUTH_TOKEN: realOAuth } });
    expect(running.env.CLAUDE_CODE_OAUTH_TOKEN).toMatch(/^claude-bottle-placeholder-/);
    expect(running.env.ANTHROPIC_API_KEY).toBeUndefined();
    expect(JSON.stringify(running.env)).not.toContain(realOAuth);
    expect(running.secrets).toEqual({});
    await claudeCall(running.env);
    expect(received[0]?.authorization).toBe(`Bearer ${realOAuth}`);
    expect(received[0]?.["x-api-key"]).toBeUndefined();
  });

  it("makes a new placeholder for every run; an earlier run's, or none, opens nothing", async () => {
    const earlier = await services();
    const running = await services();
    expect(running.env.ANTHROPIC_API_KEY).not.toBe(earlier.env.ANTHROPIC_API_KEY);
    expect(await claudeCall({ ...running.env, ANTHROPIC_API_KEY: earlier.env.ANTHROPIC_API_KEY! })).toBe(401);
    expect(await claudeCall({ ANTHROPIC_BASE_URL: running.env.ANTHROPIC_BASE_URL! })).toBe(401);
    expect(received).toEqual([]);
    expect(await claudeCall(running.env)).toBe(200);
  });

  it("prefers the API key when both are there, and keeps the OAuth token out too", async () => {
    const running = await services({
      secrets: { ANTHROPIC_API_KEY: realKey, CLAUDE_CODE_OAUTH_TOKEN: realOAuth },
    });
    expect(Object.keys(running.env)).not.toContain("CLAUDE_CODE_OAUTH_TOKEN");
    expect(JSON.stringify([running.env, running.secrets])).not.toMatch(/REAL/);
    await claudeCall(running.env);
    expect(received[0]?.["x-api-key"]).toBe(realKey);
  });

  it("hands the credentials over as secrets with credentials.passthrough", async () => {
    const running = await services({ passthroughCredentials: true });
    expect(running.secrets).toEqual({ ANTHROPIC_API_KEY: realKey });
    expect(running.env.ANTHROPIC_API_KEY).toBeUndefined();
    await claudeCall({ ...running.env, ...running.secrets });
    expect(received[0]?.["x-api-key"]).toBe(realKey);
  });

  it("refuses a credential with a line break, without showing it", async () => {
    const attempt = services({ secrets: { ANTHROPIC_API_KEY: `${realKey}\n` } });
    await expect(attempt).rejects.toSatisfy(
      (error) => BottleError.is(error) && error.code === "INVALID_CONFIG",
    );
    await expect(attempt).rejects.not.toThrow(/REAL/);
  });
});

describe("host services: the network", () => {
  it("points HTTP(S)_PROXY in both spellings at the proxy, and NO_PROXY at the forwarder's address", async () => {
    const running = await services();
    expect(running.proxyUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    for (const name of ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]) {
      expect(running.env[name], name).toBe(running.proxyUrl);
    }
    expect(running.env.NO_PROXY).toBe("localhost,127.0.0.1,::1");
    expect(running.env.no_proxy).toBe(running.env.NO_PROXY);
    expect(running.env.CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC).toBe("1");
  });

  it("refuses what is not allowed, lists it, and logs it", async () => {
    const deniedLogPath = join(tmpdir(), `claude-bottle-host-services-${process.pid}-${Date.now()}.log`);
    const running = await services({ deniedLogPath, network: { allow: ["allowed.test"], presets: ["npm"] } });
    expect(await connectThrough(running.proxyUrl!, "evil.test:443")).toBe(403);
    expect(await connectThrough(running.proxyUrl!, "api.anthropic.com:443")).toBe(403);
    expect(running.deniedHosts()).toEqual(["evil.test", "api.anthropic.com"]);
    await running.close();
    expect(await readFile(deniedLogPath, "utf8")).toContain('"host":"evil.test"');
  });

  it("never lets the proxy reach ranges the backend forbids, even under a CIDR rule", async () => {
    const running = await services({
      network: { allow: ["10.0.0.0/8"] },
      forbiddenRanges: ["10.200.0.0/16"],
    });
    expect(await connectThrough(running.proxyUrl!, "10.200.0.1:443")).toBe(403);
    expect(await connectThrough(running.proxyUrl!, "169.254.169.254:80")).toBe(403);
    expect(running.deniedHosts()).toEqual(["10.200.0.1", "169.254.169.254"]);
  });

  it("runs no proxy in open and none modes", async () => {
    for (const mode of ["open", "none"] as const) {
      const running = await services({ network: { mode } });
      expect(running.proxyUrl).toBeUndefined();
      expect(Object.keys(running.env).filter((name) => /proxy/i.test(name))).toEqual([]);
      expect(running.deniedHosts()).toEqual([]);
      expect(await claudeCall(running.env)).toBe(200);
    }
  });

  it("preloading ahead of the start throws nothing; a bad allow entry fails the start as before", async () => {
    const network = { mode: "allowlist" as const, allow: ["not a host"] };
    // Backends preload before creating the bottle's network, where a throw would skip their cleanup.
    expect(() => preloadHostServices(network)).not.toThrow();
    await expect(services({ network })).rejects.toSatisfy(
      (error) => BottleError.is(error) && error.message.includes('"not a host"'),
    );
    preloadHostServices({ mode: "allowlist", allow: ["allowed.test"] });
    const running = await services();
    expect(await connectThrough(running.proxyUrl!, "evil.test:443")).toBe(403);
  });

  it("fails with a BottleError when the address is not the host's", async () => {
    // 192.0.2.1 (TEST-NET-1) is on no interface here: listening there fails before any traffic.
    const attempt = services({ bindHost: "192.0.2.1" });
    await expect(attempt).rejects.toSatisfy((error) => BottleError.is(error) && error.code === "RUN_FAILED");
    await expect(attempt).rejects.toThrow(/on 192\.0\.2\.1: .*EADDRNOTAVAIL/);
  });

  it("stops listening on close", async () => {
    const running = await services();
    await running.close();
    for (const url of [running.apiUrl, running.proxyUrl!]) {
      const socket = connect(Number(new URL(url).port), "127.0.0.1");
      const [error] = (await once(socket, "error")) as [NodeJS.ErrnoException];
      expect(error.code).toBe("ECONNREFUSED");
    }
  });
});
