// The egress policy from inside a real bottle. Two small HTTP servers run in containers of their
// own on an ordinary bridge network made for this file: "allowed" and "forbidden". The host (and so
// the egress proxy) reaches both; the bottle, on its internal network, reaches neither except
// through the proxy. Names the bottle asks for resolve, on the host, through a resolver this test
// injects, to those two containers' addresses, so no connection leaves this machine.
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Denial, ResolvedAddress, RunResult, RunSpecInput } from "@claude-bottle/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseImage, engine, sh, until, useDockerBackend } from "./support.js";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "fixtures");
const suffix = randomBytes(4).toString("hex");
const serverNetwork = `cb-egress-test-${suffix}`;
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

/** What the injected resolver knows, and every name it was asked for. */
const dnsTable = new Map<string, () => string>([
  ["allowed.egress.test", () => servers.allowed.address],
  ["api.wild.egress.test", () => servers.allowed.address],
  ["deep.api.wild.egress.test", () => servers.allowed.address],
  ["wild.egress.test", () => servers.allowed.address],
  ["cidr-named.egress.test", () => servers.allowed.address],
  ["registry.npmjs.org", () => servers.allowed.address],
  ["forbidden.egress.test", () => servers.forbidden.address],
  ["hostlocal.egress.test", () => "127.0.0.1"],
]);
const asked: string[] = [];
async function resolveHost(name: string): Promise<ResolvedAddress[]> {
  asked.push(name);
  const address = dnsTable.get(name)?.();
  return address ? [{ address, family: 4 }] : [];
}

const { bottle, backend, prepared } = useDockerBackend({ resolveHost });

function docker(args: string[], what: string): Promise<string> {
  return engine.exec(args, "RUN_FAILED", what);
}

beforeAll(async () => {
  await docker(["network", "create", serverNetwork], "creating the test servers' network");
  for (const [name, server] of Object.entries(servers)) {
    await docker(
      [
        ...["run", "--detach", "--name", server.container, "--network", serverNetwork],
        ...["--env", `SERVER=${name}`, baseImage, "node", "-e", serverScript],
      ],
      `starting the ${name} test server`,
    );
    const inspect = await engine.inspect(server.container);
    const networks = (inspect.NetworkSettings as { Networks: Record<string, { IPAddress: string }> })
      .Networks;
    server.address = networks[serverNetwork]!.IPAddress;
  }
  // Both answer the host before any bottle asks for them.
  for (const server of Object.values(servers)) {
    await until(`the test server ${server.container}`, () =>
      fetch(`http://${server.address}:${port}/ready`).then(
        (response) => (response.ok ? true : undefined),
        () => undefined,
      ),
    );
  }
});

afterAll(async () => {
  for (const server of Object.values(servers))
    await docker(["rm", "--force", server.container], "removing a test server").catch(() => undefined);
  await docker(["network", "rm", serverNetwork], "removing the test network").catch(() => undefined);
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
    // names nobody allowed were never looked up
    expect([...new Set(asked)].sort()).toEqual(
      [
        "allowed.egress.test",
        "api.wild.egress.test",
        "deep.api.wild.egress.test",
        "hostlocal.egress.test",
        "registry.npmjs.org",
      ].sort(),
    );
  });

  it("gives the bottle no route and no DNS of its own: the proxy on the gateway is the only way out", () => {
    const { results, env, getent } = run;
    expect(results["a direct connection to the allowed server"]).toEqual({ error: expect.any(String) });
    expect(results["a direct connection to the forbidden server"]).toEqual({ error: expect.any(String) });
    expect(results["a DNS lookup of an allowed public name"]).toEqual({ error: expect.any(String) });
    expect(getent["registry.npmjs.org"]).not.toBe(0);
    expect(getent["registry.npmjs.org"]).toBeDefined();

    const proxy = new URL(env.get("HTTP_PROXY")!);
    expect(env.get("HTTPS_PROXY")).toBe(env.get("HTTP_PROXY"));
    expect(new URL(env.get("ANTHROPIC_BASE_URL")!).hostname).toBe(proxy.hostname);
    expect(env.get("NO_PROXY")!.split(",")).toContain(proxy.hostname);
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
    expect(env.get("ANTHROPIC_BASE_URL")).toMatch(/^http:\/\/[\d.]+:\d+$/);
    expect(results["a direct connection to the allowed server"]).toEqual({ error: expect.any(String) });
    expect(results["http through a proxy"]).toEqual({ error: "no HTTP_PROXY" });
    expect(result).toEqual({ exitCode: 0, deniedHosts: [] });
  });
});
