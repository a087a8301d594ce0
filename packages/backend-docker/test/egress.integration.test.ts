// The egress policy from inside a real bottle. Two small HTTP servers run in containers of their
// own on the engine's default bridge: "allowed" and "forbidden". The bottle's gateway (and so the
// egress proxy) reaches both; the bottle, with no network, reaches neither except through the proxy.
// Names the bottle asks for resolve, in the gateway, through /etc/hosts entries this test gives it
// (`gatewayHosts`), to those two containers' addresses, so no connection leaves the engine's machine.
// Then the attacks: everything else the bottle must not reach, tried from inside.
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { networkInterfaces } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { engineHostAddress } from "@claude-bottle/container-engine/testing";
import type { RunResult, RunSpecInput } from "@claude-bottle/core";
import type { Denial } from "@claude-bottle/gateway/services";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseImage, engine, sh, useDockerBackend } from "./support.js";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "fixtures");
const suffix = randomBytes(4).toString("hex");
const port = 8080;

/** Each server answers every request with its name, the Host header and the path, and logs it. */
const serverScript = `
require("http").createServer((req, res) => {
  console.log(JSON.stringify({ method: req.method, url: req.url, host: req.headers.host }));
  res.setHeader("connection", "close");
  res.end("hello from " + process.env.SERVER + " host=" + req.headers.host + " url=" + req.url);
}).listen(${port});
`;
const servers = {
  allowed: { container: `cb-egress-allowed-${suffix}`, address: "" },
  forbidden: { container: `cb-egress-forbidden-${suffix}`, address: "" },
};

/**
 * What the gateway resolves, filled in once the servers run (the backend reads it at each run).
 * "enginehost" and "clihost" lead to the engine's machine and to this one: allowed names that must
 * still be refused.
 */
const gatewayHosts: Record<string, string> = {};
let engineHost = "";
/** This machine's first non-loopback IPv4 address that is not the engine's bridge. */
const cliHost =
  Object.values(networkInterfaces())
    .flatMap((entries) => entries ?? [])
    .find((entry) => entry.family === "IPv4" && !entry.internal)?.address ?? "";

const { bottle, backend, prepared } = useDockerBackend({ gatewayHosts });

function docker(args: string[], what: string): Promise<string> {
  return engine.exec(args, "RUN_FAILED", what);
}

/** A server on every address of this machine: what the bottle must never reach. */
let hostService: Server;
let hostServicePort = 0;
const hostServiceSeen: string[] = [];
/** The allowed server's port, published on the engine's machine. */
let publishedPort = 0;

beforeAll(async () => {
  for (const [name, server] of Object.entries(servers)) {
    await docker(
      [
        ...["run", "--detach", "--name", server.container, "--network", "bridge", "--publish", String(port)],
        ...["--env", `SERVER=${name}`, baseImage, "node", "-e", serverScript],
      ],
      `starting the ${name} test server`,
    );
    const inspect = await engine.inspect(server.container);
    const networks = (inspect.NetworkSettings as { Networks: Record<string, { IPAddress: string }> })
      .Networks;
    server.address = networks.bridge!.IPAddress;
  }
  publishedPort = Number(
    (await docker(["port", servers.allowed.container, String(port)], "reading the published port"))
      .split("\n")[0]!
      .split(":")
      .at(-1),
  );
  engineHost = await engineHostAddress(engine);
  Object.assign(gatewayHosts, {
    "allowed.egress.test": servers.allowed.address,
    "api.wild.egress.test": servers.allowed.address,
    "deep.api.wild.egress.test": servers.allowed.address,
    "wild.egress.test": servers.allowed.address,
    "cidr-named.egress.test": servers.allowed.address,
    "registry.npmjs.org": servers.allowed.address,
    "forbidden.egress.test": servers.forbidden.address,
    "hostlocal.egress.test": "127.0.0.1",
    "enginehost.egress.test": engineHost,
    "clihost.egress.test": cliHost,
  });
  hostService = createServer((req, res) => {
    hostServiceSeen.push(`${req.method} ${req.url}`);
    res.end("the host's own service");
  });
  hostService.listen(0, "0.0.0.0");
  await once(hostService, "listening");
  hostServicePort = (hostService.address() as AddressInfo).port;
  // Both servers answer a container on the bridge before any bottle asks for them.
  for (const server of Object.values(servers)) {
    await docker(
      [
        ...["run", "--rm", "--network", "bridge", baseImage, "node", "-e"],
        `fetch("http://${server.address}:${port}/ready").then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`,
      ],
      `checking the test server ${server.container}`,
    );
  }
});

afterAll(async () => {
  hostService?.close();
  for (const server of Object.values(servers))
    await docker(["rm", "--force", server.container], "removing a test server").catch(() => undefined);
});

/** The requests a test server has seen, apart from the readiness check. */
async function requestsSeenBy(server: { container: string }): Promise<{ url: string; host: string }[]> {
  const log = await docker(["logs", server.container], "reading a test server's log");
  return log
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { url: string; host: string })
    .filter((request) => request.url !== "/ready");
}

type Probe =
  | { kind: "fetch"; url: string }
  | { kind: "proxy"; bytes: string; tunnel?: string }
  | { kind: "direct"; host: string; port: number }
  | { kind: "lookup"; name: string };

interface ProbeResult {
  status?: number | null;
  text?: string;
  error?: string;
  connected?: boolean;
  addresses?: string[];
}

/** An absolute-form request through the proxy, with the Host header given (default: the URL's). */
function get(url: string, host?: string): Probe {
  return {
    kind: "proxy",
    bytes: `GET ${url} HTTP/1.1\r\nHost: ${host ?? new URL(url).host}\r\nConnection: close\r\n\r\n`,
  };
}

/** A CONNECT tunnel, and a plain request for /tunnel through it once it stands. */
function connectTo(authority: string): Probe {
  return {
    kind: "proxy",
    bytes: `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`,
    tunnel: `GET /tunnel HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`,
  };
}

interface ProbeRun {
  result: RunResult;
  results: Record<string, ProbeResult>;
  /** `getent hosts NAME`'s exit status for each name asked. */
  getent: Record<string, number>;
  /** The bottle's environment. */
  env: Map<string, string>;
  denials: Denial[];
  startedAt: number;
  endedAt: number;
}

/** Run the probes, in order, in one bottle with `network` as its policy; `getent hosts` each of `names`. */
async function probeFromInside(
  network: RunSpecInput["network"],
  probes: Record<string, Probe>,
  names: string[] = [],
): Promise<ProbeRun> {
  const { spec, workspace } = await bottle({
    network,
    env: { NODE_USE_ENV_PROXY: "1" },
    mounts: [{ source: fixtures, target: "/probe", readOnly: true }],
    command: sh(
      [
        "env > env.txt",
        // in the background, while the probes run
        ...names.map(
          (name) => `(timeout 5 getent hosts ${name} > /dev/null; echo "${name} $?" >> getent.txt) &`,
        ),
        "node /probe/egress-probe.mjs probes.json results.json",
        "wait",
      ].join("\n"),
    ),
  });
  // Outside the workspace: the denial log is the host's record, not the bottle's.
  const deniedLogPath = join(dirname(workspace), "denied.jsonl");
  await writeFile(join(workspace, "probes.json"), JSON.stringify(probes));
  const startedAt = Date.now();
  const result = await backend.run(prepared(), { ...spec, deniedLogPath });
  const endedAt = Date.now();
  const read = (file: string) => readFile(join(workspace, file), "utf8").catch(() => "");
  const env = new Map(
    (await read("env.txt"))
      .split("\n")
      .filter((line) => line.includes("="))
      .map(
        (line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)] as [string, string],
      ),
  );
  const getent = Object.fromEntries(
    (await read("getent.txt"))
      .split("\n")
      .filter(Boolean)
      .map((line) => [line.split(" ")[0], Number(line.split(" ")[1])]),
  );
  const denials = (await readFile(deniedLogPath, "utf8").catch(() => ""))
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Denial);
  return {
    result,
    results: JSON.parse(await read("results.json")),
    getent,
    env,
    denials,
    startedAt,
    endedAt,
  };
}

describe("a bottle in allowlist mode (real engine, real proxy, real bottle)", () => {
  let run: ProbeRun;
  let A: string;
  let B: string;

  beforeAll(async () => {
    A = servers.allowed.address;
    B = servers.forbidden.address;
    const allowed = `allowed.egress.test:${port}`;
    run = await probeFromInside(
      {
        mode: "allowlist",
        allow: ["allowed.egress.test", "*.wild.egress.test", `${A}/32`, "hostlocal.egress.test"],
        presets: ["npm"],
      },
      {
        // allowed
        "fetch by name": { kind: "fetch", url: `http://${allowed}/fetch` },
        "http by name": get(`http://${allowed}/http`),
        "connect by name": connectTo(allowed),
        "http to an IP in a CIDR rule": get(`http://${A}:${port}/ip`),
        "connect to an IP in a CIDR rule": connectTo(`${A}:${port}`),
        "http to a subdomain": get(`http://api.wild.egress.test:${port}/sub`),
        "connect to a deeper subdomain": connectTo(`deep.api.wild.egress.test:${port}`),
        "http to a preset's host": get(`http://registry.npmjs.org:${port}/preset`),
        // not allowed
        "fetch of a name not allowed": { kind: "fetch", url: `http://forbidden.egress.test:${port}/fetch` },
        "http to a name not allowed": get(`http://forbidden.egress.test:${port}/`),
        "connect to a name not allowed": connectTo(`forbidden.egress.test:${port}`),
        "http to a raw IP not allowed": get(`http://${B}:${port}/`),
        "connect to an IP not allowed": connectTo(`${B}:${port}`),
        "http to the wildcard's own domain": get(`http://wild.egress.test:${port}/`),
        "http to a look-alike of the wildcard": get(`http://xwild.egress.test:${port}/`),
        "http to a name resolving into the CIDR rule": get(`http://cidr-named.egress.test:${port}/`),
        "http to an allowed name resolving to the host": get(`http://hostlocal.egress.test:${port}/`),
        // smuggling
        "a Host header naming another host": get(`http://${allowed}/`, `forbidden.egress.test:${port}`),
        "a Host header naming a host for an allowed IP": get(
          `http://${A}:${port}/`,
          `forbidden.egress.test:${port}`,
        ),
        "user info before the host": get(`http://${allowed}@forbidden.egress.test:${port}/`, allowed),
        "a fragment hiding the host": get(`http://forbidden.egress.test:${port}#@${allowed}/`, allowed),
        "a backslash hiding the host": get(`http://forbidden.egress.test:${port}\\@${allowed}/`, allowed),
        "an origin-form request naming another host": get("/origin", `forbidden.egress.test:${port}`),
        "a CONNECT with user info": connectTo(`${allowed.split(":")[0]}@forbidden.egress.test:${port}`),
        // around the proxy
        "a direct connection to the allowed server": { kind: "direct", host: A, port },
        "a direct connection to the forbidden server": { kind: "direct", host: B, port },
        "a DNS lookup of an allowed public name": { kind: "lookup", name: "registry.npmjs.org" },
      },
      ["registry.npmjs.org"],
    );
  });

  it("reaches an allowed host by name: fetch through HTTP_PROXY, plain HTTP, and a CONNECT tunnel", () => {
    const { results } = run;
    expect(results["fetch by name"]).toMatchObject({
      status: 200,
      text: "hello from allowed host=allowed.egress.test:8080 url=/fetch",
    });
    expect(results["http by name"]!.status).toBe(200);
    expect(results["http by name"]!.text).toContain(
      "hello from allowed host=allowed.egress.test:8080 url=/http",
    );
    expect(results["connect by name"]!.status).toBe(200);
    expect(results["connect by name"]!.text).toContain(
      "hello from allowed host=allowed.egress.test:8080 url=/tunnel",
    );
    expect(run.result.exitCode).toBe(0);
  });

  it("refuses a host that is not allowed: by name, by raw IP, by CONNECT to an IP, and fetch sees 403", async () => {
    const { results } = run;
    // fetch tunnels through HTTP_PROXY with CONNECT, and fails when the proxy refuses the tunnel
    expect(results["fetch of a name not allowed"]!.error).toMatch(/Proxy response \(403\)/);
    for (const probe of [
      "http to a name not allowed",
      "connect to a name not allowed",
      "http to a raw IP not allowed",
      "connect to an IP not allowed",
    ]) {
      expect(results[probe]!.status, probe).toBe(403);
      expect(results[probe]!.text, probe).toMatch(/is not on this bottle's network allow-list/);
      expect(results[probe]!.text, probe).not.toContain("hello from");
    }
    expect(await requestsSeenBy(servers.forbidden)).toEqual([]);
  });

  it("refuses a mismatched Host header and absolute-URI smuggling; the allowed server sees only its own names", async () => {
    const { results } = run;
    for (const probe of [
      "a Host header naming another host",
      "a Host header naming a host for an allowed IP",
      "user info before the host",
      "a fragment hiding the host",
      "a backslash hiding the host",
      "a CONNECT with user info",
    ]) {
      expect(results[probe]!.status, probe).toBe(400);
      expect(results[probe]!.text, probe).not.toContain("hello from");
    }
    expect(results["an origin-form request naming another host"]!.status).toBeGreaterThanOrEqual(400);
    expect(results["an origin-form request naming another host"]!.text).not.toContain("hello from");
    expect(await requestsSeenBy(servers.forbidden)).toEqual([]);
    const hosts = new Set((await requestsSeenBy(servers.allowed)).map((request) => request.host));
    expect([...hosts].sort()).toEqual(
      [
        "allowed.egress.test:8080",
        `${A}:${port}`,
        `api.wild.egress.test:${port}`,
        `deep.api.wild.egress.test:${port}`,
        `registry.npmjs.org:${port}`,
      ].sort(),
    );
  });

  it("applies subdomain, CIDR and preset rules as documented", () => {
    const { results } = run;
    // *.wild.egress.test: any name below the domain, not the domain, not a look-alike
    expect(results["http to a subdomain"]!.text).toContain("hello from allowed host=api.wild.egress.test");
    expect(results["connect to a deeper subdomain"]!.text).toContain(
      "hello from allowed host=deep.api.wild.egress.test",
    );
    expect(results["http to the wildcard's own domain"]!.status).toBe(403);
    expect(results["http to a look-alike of the wildcard"]!.status).toBe(403);
    // A/32: the address, by plain HTTP and CONNECT; never a name that happens to resolve into it
    expect(results["http to an IP in a CIDR rule"]!.text).toContain(
      `hello from allowed host=${A}:${port} url=/ip`,
    );
    expect(results["connect to an IP in a CIDR rule"]!.text).toContain("hello from allowed");
    expect(results["http to a name resolving into the CIDR rule"]!.status).toBe(403);
    // an allowed name is still refused when it resolves to the host itself
    expect(results["http to an allowed name resolving to the host"]!.status).toBe(403);
    expect(results["http to an allowed name resolving to the host"]!.text).toContain(
      "resolves to 127.0.0.1, which is an address of the host itself",
    );
    // the npm preset admits its registry
    expect(results["http to a preset's host"]!.text).toContain("hello from allowed host=registry.npmjs.org");
  });

  it("gives the bottle no route and no DNS of its own: the relay to its gateway is the only way out", () => {
    const { results, env, getent } = run;
    expect(results["a direct connection to the allowed server"]).toEqual({ error: expect.any(String) });
    expect(results["a direct connection to the forbidden server"]).toEqual({ error: expect.any(String) });
    expect(results["a DNS lookup of an allowed public name"]).toEqual({ error: expect.any(String) });
    expect(getent["registry.npmjs.org"]).not.toBe(0);
    expect(getent["registry.npmjs.org"]).toBeDefined();

    const proxy = new URL(env.get("HTTP_PROXY")!);
    expect(env.get("HTTPS_PROXY")).toBe(env.get("HTTP_PROXY"));
    expect(proxy.hostname).toBe("127.0.0.1");
    expect(new URL(env.get("ANTHROPIC_BASE_URL")!).hostname).toBe("127.0.0.1");
    expect(env.get("NO_PROXY")!.split(",")).toContain("127.0.0.1");
  });

  it("logs each refusal with host and time, and the run's result lists the refused hosts", () => {
    const { result, denials, startedAt, endedAt } = run;
    expect(result.deniedHosts).toEqual([
      "forbidden.egress.test",
      B,
      "wild.egress.test",
      "xwild.egress.test",
      "cidr-named.egress.test",
      "hostlocal.egress.test",
    ]);
    for (const denial of denials) {
      const time = Date.parse(denial.time);
      expect(time).toBeGreaterThanOrEqual(startedAt - 1000);
      expect(time).toBeLessThanOrEqual(endedAt + 1000);
    }
    const notAllowed = denials.filter((denial) => denial.reason !== "malformed");
    expect(notAllowed.map((denial) => denial.host)).toEqual([
      "forbidden.egress.test",
      "forbidden.egress.test",
      "forbidden.egress.test",
      B,
      B,
      "wild.egress.test",
      "xwild.egress.test",
      "cidr-named.egress.test",
      "hostlocal.egress.test",
    ]);
    expect(denials.filter((denial) => denial.reason === "malformed").length).toBeGreaterThanOrEqual(4);
  });
});

describe("other network modes (real engine)", () => {
  it("without the preset, the preset's host is refused", async () => {
    const { results, result } = await probeFromInside(
      { mode: "allowlist", allow: ["allowed.egress.test"] },
      { "http to npm's registry": get(`http://registry.npmjs.org:${port}/`) },
    );
    expect(results["http to npm's registry"]!.status).toBe(403);
    expect(result.deniedHosts).toEqual(["registry.npmjs.org"]);
  });

  it("mode none: no proxy, no route, nothing refused because nothing was asked", async () => {
    const { results, env, result } = await probeFromInside(
      { mode: "none", allow: [] },
      {
        "a direct connection to the allowed server": { kind: "direct", host: servers.allowed.address, port },
        "http through a proxy": get(`http://allowed.egress.test:${port}/`),
      },
    );
    expect(env.has("HTTP_PROXY")).toBe(false);
    expect(env.get("ANTHROPIC_BASE_URL")).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(results["a direct connection to the allowed server"]).toEqual({ error: expect.any(String) });
    expect(results["http through a proxy"]).toEqual({ error: "no HTTP_PROXY" });
    expect(result).toEqual({ exitCode: 0, deniedHosts: [] });
  });
});

describe("attacks from inside: nothing but the API and the allow-list (real engine, real bottle)", () => {
  let run: ProbeRun;

  beforeAll(async () => {
    const direct = (host: string, to: number): Probe => ({ kind: "direct", host, port: to });
    run = await probeFromInside(
      { mode: "allowlist", allow: ["allowed.egress.test", "enginehost.egress.test", "clihost.egress.test"] },
      {
        // straight at things, around the relay: the bottle has no interface to try them from
        "this machine's service, at the engine's address for it": direct(engineHost, hostServicePort),
        "this machine's service, at its own address": direct(cliHost, hostServicePort),
        "this machine's service, on the bottle's loopback": direct("127.0.0.1", hostServicePort),
        "a published port on the engine's machine": direct(engineHost, publishedPort),
        "another container": direct(servers.allowed.address, port),
        "a public raw IP": direct("1.1.1.1", 443),
        "the metadata address": direct("169.254.169.254", 80),
        // through the proxy
        "CONNECT to this machine's service": connectTo(`${engineHost}:${hostServicePort}`),
        "CONNECT to a published port": connectTo(`${engineHost}:${publishedPort}`),
        "http to another container by IP": get(`http://${servers.forbidden.address}:${port}/`),
        "an allowed name resolving to the engine's machine": get(
          `http://enginehost.egress.test:${hostServicePort}/`,
        ),
        "an allowed name resolving to this machine": get(`http://clihost.egress.test:${hostServicePort}/`),
        "a CONNECT by allowed name to the engine's machine": connectTo(
          `enginehost.egress.test:${publishedPort}`,
        ),
        // the way that is open
        "the allowed server by name": get(`http://allowed.egress.test:${port}/open`),
      },
    );
  });

  it("reaches nothing directly: no host, engine, container, published port or raw IP", () => {
    for (const probe of [
      "this machine's service, at the engine's address for it",
      "this machine's service, at its own address",
      "this machine's service, on the bottle's loopback",
      "a published port on the engine's machine",
      "another container",
      "a public raw IP",
      "the metadata address",
    ]) {
      expect(run.results[probe], probe).toEqual({ error: expect.any(String) });
    }
  });

  it("is refused by the proxy at the engine's machine and this one, by address or by an allowed name", () => {
    const { results } = run;
    for (const probe of [
      "CONNECT to this machine's service",
      "CONNECT to a published port",
      "http to another container by IP",
      "an allowed name resolving to the engine's machine",
      "an allowed name resolving to this machine",
      "a CONNECT by allowed name to the engine's machine",
    ]) {
      expect(results[probe]!.status, probe).toBe(403);
      expect(results[probe]!.text, probe).not.toContain("host's own service");
      expect(results[probe]!.text, probe).not.toContain("hello from");
    }
    expect(results["an allowed name resolving to the engine's machine"]!.text).toContain(
      `resolves to ${engineHost}, which is an address of the host itself`,
    );
    expect(results["an allowed name resolving to this machine"]!.text).toContain(
      `resolves to ${cliHost}, which is an address of the host itself`,
    );
    // while the way that is open works, and the host's service saw nothing at all
    expect(results["the allowed server by name"]!.text).toContain("hello from allowed");
    expect(hostServiceSeen).toEqual([]);
    expect(run.result.exitCode).toBe(0);
  });
});
