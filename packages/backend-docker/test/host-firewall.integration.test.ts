// The bottle reaches the host services on its gateway and nothing else of the host's. The host
// runs a TCP server on all its addresses (as a developer's database or notebook server would);
// the bottle tries it through the gateway and through another address of the host (docker0's),
// and uses the API forwarder (to core's Anthropic API double, a named test double on the host's
// loopback) and, in allowlist mode, the egress proxy (to a server container, the only "allowed
// host"). In open mode it also reaches a test host in a network namespace made here, routed by the
// host: egress the firewall must leave alone. Every address is on this machine.
//
// The rules are read with `iptables -S` while the bottle waits and after it is gone, so these tests
// run as root, as CI does. As root the backend adds them itself; the helper-container way and the
// unguarded way are forced through the backend's `hostFirewall` option.
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BottleError, type ResolvedAddress, type RunResult, type RunSpecInput } from "@claude-bottle/core";
import { type AnthropicApiDouble, startAnthropicApiDouble } from "@claude-bottle/core/testing";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PreparedDockerImage } from "../src/index.js";
import { baseImage, type DockerTestKit, engine, running, sh, until, useDockerBackend } from "./support.js";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "fixtures");
const suffix = randomBytes(4).toString("hex");

function docker(args: string[], what: string): Promise<string> {
  return engine.exec(args, "RUN_FAILED", what);
}

/** A service of the host's own, listening on every address: what the bottle must not reach. */
let hostService: Server;
let hostServicePort = 0;
const hostServiceClients: string[] = [];
/** Another address of the host: the default bridge's gateway. */
let docker0 = "";

let api: AnthropicApiDouble;

/** The one host the egress proxy lets the bottle reach: a server container on a network of its own. */
const target = { network: `cb-fw-targets-${suffix}`, container: `cb-fw-target-${suffix}`, address: "" };
async function resolveHost(name: string): Promise<ResolvedAddress[]> {
  return name === "allowed.firewall.test" ? [{ address: target.address, family: 4 }] : [];
}

/** A host beyond this machine's own addresses, as the internet is to a bottle in open mode. */
const outside = {
  netns: `cb-fw-${suffix}`,
  hostSide: `cbfw${suffix.slice(0, 6)}h`,
  address: `198.18.${Number.parseInt(suffix.slice(0, 2), 16)}.2`,
  server: undefined as ResultPromise | undefined,
};

const serverScript = (greeting: string) =>
  `require("net").createServer((s) => s.end(${JSON.stringify(greeting)})).listen(8080)`;

beforeAll(async () => {
  hostService = createServer((socket) => {
    hostServiceClients.push(socket.remoteAddress ?? "");
    socket.end("host service\n");
  });
  hostService.listen(0, "0.0.0.0");
  await once(hostService, "listening");
  hostServicePort = (hostService.address() as { port: number }).port;
  docker0 = (
    await docker(
      ["network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", "bridge"],
      "docker0",
    )
  ).trim();
  api = await startAnthropicApiDouble({ turns: [] });

  await docker(["network", "create", target.network], "creating the target's network");
  await docker(
    [
      ...["run", "--detach", "--name", target.container, "--network", target.network, baseImage],
      ...[
        "node",
        "-e",
        `require("http").createServer((q, r) => r.end("hello from the target")).listen(8080)`,
      ],
    ],
    "starting the target server",
  );
  const inspect = await engine.inspect(target.container);
  target.address = (inspect.NetworkSettings as { Networks: Record<string, { IPAddress: string }> }).Networks[
    target.network
  ]!.IPAddress;

  const hostAddress = outside.address.replace(/\.2$/, ".1");
  const ip = (...args: string[]) => execa("ip", args);
  await ip("netns", "add", outside.netns);
  await ip("link", "add", outside.hostSide, "type", "veth", "peer", "name", "eth0", "netns", outside.netns);
  await ip("addr", "add", `${hostAddress}/30`, "dev", outside.hostSide);
  await ip("link", "set", outside.hostSide, "up");
  await ip("-n", outside.netns, "addr", "add", `${outside.address}/30`, "dev", "eth0");
  await ip("-n", outside.netns, "link", "set", "eth0", "up");
  outside.server = execa("ip", [
    "netns",
    "exec",
    outside.netns,
    process.execPath,
    "-e",
    serverScript("outside\n"),
  ]);
  outside.server.catch(() => undefined);

  // Both answer the host before any bottle asks.
  await until("the target server", () =>
    fetch(`http://${target.address}:8080/`).then(
      (response) => (response.ok ? true : undefined),
      () => undefined,
    ),
  );
  await until("the outside server", async () => {
    const { stdout } = await execa("ip", ["netns", "exec", outside.netns, "ss", "-ltn"]).catch(() => ({
      stdout: "",
    }));
    return stdout.includes(":8080") ? true : undefined;
  });
});

afterAll(async () => {
  hostService?.close();
  await api?.close();
  await docker(["rm", "--force", target.container], "removing the target").catch(() => undefined);
  await docker(["network", "rm", target.network], "removing the target's network").catch(() => undefined);
  outside.server?.kill();
  await execa("ip", ["netns", "delete", outside.netns]).catch(() => undefined);
});

const auto = useDockerBackend({ resolveHost });
const viaContainer = useDockerBackend({ resolveHost, hostFirewall: { strategies: ["container"] } });
const noWay = useDockerBackend({ hostFirewall: { strategies: [] } });

/**
 * Lines of `iptables -S` and `ip6tables -S` that are this network's guard: its chain, and any INPUT
 * rule for its bridge. (Docker's own FORWARD rules for the bridge are not ours.)
 */
async function rulesOf(networkId: string): Promise<{ ipv4: string[]; ipv6: string[] }> {
  const id = networkId.slice(0, 12);
  const ours = (line: string) =>
    line.includes(`CLAUDE-BOTTLE-${id}`) || (line.startsWith("-A INPUT ") && line.includes(`br-${id}`));
  const lines = async (command: string) => (await execa(command, ["-S"])).stdout.split("\n").filter(ours);
  return { ipv4: await lines("iptables"), ipv6: await lines("ip6tables") };
}

function guardOf(networkId: string): string[] {
  const id = networkId.slice(0, 12);
  return [`-N CLAUDE-BOTTLE-${id}`, `-A INPUT -i br-${id} -j CLAUDE-BOTTLE-${id}`];
}

/** Statuses of the container called `name` in the engine's event log since `since` (seconds). */
async function eventsOf(name: string, since: number): Promise<string[]> {
  const out = await docker(
    [
      ...["events", "--since", since.toFixed(3), "--until", (Date.now() / 1000).toFixed(3)],
      ...["--filter", `container=${name}`, "--format", "{{.Status}}"],
    ],
    "reading the engine's events",
  );
  return out.split("\n").filter(Boolean);
}

/** The id of the network `name` created since `since`, from the engine's event log (it may be gone). */
async function networkCreated(name: string, since: number): Promise<string> {
  const out = await docker(
    [
      ...["events", "--since", since.toFixed(3), "--until", (Date.now() / 1000).toFixed(3)],
      ...["--filter", "type=network", "--filter", "event=create", "--filter", `network=${name}`],
      ...["--format", "{{.Actor.ID}}"],
    ],
    "reading the engine's events",
  );
  return out.trim();
}

type Probe = { kind: "tcp"; host: string; port: number } | { kind: "api" } | { kind: "fetch"; url: string };
interface ProbeResult {
  connected?: boolean;
  reply?: string;
  ms?: number;
  error?: string;
  status?: number;
  text?: string;
}

const hostProbes = (): Record<string, Probe> => ({
  "the host's service through the gateway": { kind: "tcp", host: "gateway", port: hostServicePort },
  "the host's service at another of its addresses": { kind: "tcp", host: docker0, port: hostServicePort },
  "the API through the forwarder": { kind: "api" },
});

interface ProbeRun {
  result: RunResult;
  results: Record<string, ProbeResult>;
  /** The bottle's rules while it waited, and after the run. */
  during: { ipv4: string[]; ipv6: string[] };
  after: { ipv4: string[]; ipv6: string[] };
  networkId: string;
  name: string;
  since: number;
  /** Connections the host's service accepted during the run. */
  reachedHost: string[];
}

/**
 * Run the probes in a bottle that then waits for "go": the rules are read while it waits and
 * again after the run. `image` runs another image than the kit's agent image.
 */
async function probeRun(
  kit: DockerTestKit,
  overrides: Partial<RunSpecInput>,
  probes: Record<string, Probe>,
  image?: PreparedDockerImage,
): Promise<ProbeRun> {
  const { spec, workspace } = await kit.bottle({
    secrets: { ANTHROPIC_API_KEY: `sk-ant-api03-TESTSECRET-${suffix}` },
    anthropicBaseUrl: api.url,
    env: { NODE_USE_ENV_PROXY: "1" },
    mounts: [{ source: fixtures, target: "/probe", readOnly: true }],
    command: sh(
      "node /probe/host-probe.mjs probes.json results.json && while [ ! -e go ]; do sleep 0.1; done",
    ),
    ...overrides,
  });
  await writeFile(join(workspace, "probes.json"), JSON.stringify(probes));
  const since = Date.now() / 1000;
  const clientsBefore = hostServiceClients.length;
  const run = image ? kit.backend.run(image, spec) : kit.start(spec).run;
  run.catch(() => undefined);
  let results: Record<string, ProbeResult>;
  let networkId: string;
  let during: { ipv4: string[]; ipv6: string[] };
  try {
    results = await until("the probes' results", () =>
      readFile(join(workspace, "results.json"), "utf8").then(
        (text) => JSON.parse(text) as Record<string, ProbeResult>,
        () => undefined,
      ),
    );
    networkId = (await docker(["network", "inspect", "--format", "{{.Id}}", spec.name], "network id")).trim();
    during = await rulesOf(networkId);
  } finally {
    // let the bottle end, whatever happened here
    await writeFile(join(workspace, "go"), "");
  }
  const result = await run;
  return {
    result,
    results,
    during,
    after: await rulesOf(networkId),
    networkId,
    name: spec.name,
    since,
    reachedHost: hostServiceClients.slice(clientsBefore),
  };
}

/** The host's service refused the bottle at once, at each address; it never saw a connection. */
function expectHostFenced(run: ProbeRun): void {
  const viaGateway = run.results["the host's service through the gateway"]!;
  expect(viaGateway).toMatchObject({ connected: false, reply: "", error: "ECONNREFUSED" });
  expect(viaGateway.ms).toBeLessThan(1000);
  const elsewhere = run.results["the host's service at another of its addresses"]!;
  expect(elsewhere.connected).toBe(false);
  expect(elsewhere.error).toMatch(/^(ECONNREFUSED|ENETUNREACH|EHOSTUNREACH)$/);
  expect(elsewhere.ms).toBeLessThan(1000);
  expect(run.reachedHost).toEqual([]);
}

/** The forwarder still works: the API double answered. */
function expectApiReached(run: ProbeRun): void {
  expect(run.results["the API through the forwarder"]).toMatchObject({ status: 200 });
  expect(run.results["the API through the forwarder"]!.text).toContain("claude-bottle API double");
}

/** The bottle's chain and jump were there while it ran, in both families, and are gone now. */
function expectRulesOnlyDuringTheRun(run: ProbeRun): void {
  for (const family of ["ipv4", "ipv6"] as const) {
    expect(run.during[family], family).toEqual(expect.arrayContaining(guardOf(run.networkId)));
    expect(run.after[family], family).toEqual([]);
  }
}

describe("the bottle reaches the host services and nothing else of the host's (root: iptables on this machine)", () => {
  it("allowlist mode: the host's service is refused at once; the forwarder and the proxy work", async () => {
    const run = await probeRun(
      auto,
      { network: { mode: "allowlist", allow: ["allowed.firewall.test"] } },
      {
        ...hostProbes(),
        "an allowed host through the proxy": { kind: "fetch", url: "http://allowed.firewall.test:8080/" },
      },
    );
    expectHostFenced(run);
    expectApiReached(run);
    expect(run.results["an allowed host through the proxy"]).toEqual({
      status: 200,
      text: "hello from the target",
    });
    expectRulesOnlyDuringTheRun(run);
    expect(run.result).toEqual({ exitCode: 0, deniedHosts: [] });
    // claude-bottle is root here: no helper container was needed
    expect(await eventsOf(`${run.name}-firewall-1`, run.since)).toEqual([]);
  });

  it("none mode: the host's service is refused; the forwarder works", async () => {
    const run = await probeRun(auto, { network: { mode: "none", allow: [] } }, hostProbes());
    expectHostFenced(run);
    expectApiReached(run);
    expectRulesOnlyDuringTheRun(run);
  });

  it("open mode: the host's service is refused; hosts the host routes to are still reached", async () => {
    const run = await probeRun(
      auto,
      { network: { mode: "open", allow: [] } },
      {
        ...hostProbes(),
        "a host beyond this machine": { kind: "tcp", host: outside.address, port: 8080 },
      },
    );
    expectHostFenced(run);
    expectApiReached(run);
    expect(run.results["a host beyond this machine"]).toMatchObject({ connected: true, reply: "outside\n" });
    expectRulesOnlyDuringTheRun(run);
  });

  it("a run that fails after the rules went in leaves none behind", async () => {
    // Docker refuses more CPUs than the machine has: `docker run` exits 125 once the rules are in.
    const { spec } = await auto.bottle({ resources: { cpus: 1000 } });
    const since = Date.now() / 1000;
    const error = await auto.start(spec).run.catch((caught: unknown) => caught);
    expect(BottleError.is(error) && error.code).toBe("RUN_FAILED");
    const networkId = await networkCreated(spec.name, since);
    expect(networkId).toMatch(/^[0-9a-f]{64}$/);
    expect(await rulesOf(networkId)).toEqual({ ipv4: [], ipv6: [] });
  });

  it("an aborted run leaves none behind", async () => {
    const { spec } = await auto.bottle({ command: ["sleep", "60"] });
    const { run, controller } = auto.start(spec);
    await running(spec.name);
    const networkId = (
      await docker(["network", "inspect", "--format", "{{.Id}}", spec.name], "network id")
    ).trim();
    expect((await rulesOf(networkId)).ipv4).toEqual(expect.arrayContaining(guardOf(networkId)));
    controller.abort();
    const error = await run.catch((caught: unknown) => caught);
    expect(BottleError.is(error) && error.code).toBe("ABORTED");
    expect(await rulesOf(networkId)).toEqual({ ipv4: [], ipv6: [] });
  });

  it("a chain left by a killed run, whose bridge is gone, is swept by the next run; a live bottle's is not", async () => {
    const stale = randomBytes(6).toString("hex");
    const liveNetwork = `cb-fw-live-${suffix}`;
    const live = (await docker(["network", "create", liveNetwork], "creating a live network"))
      .trim()
      .slice(0, 12);
    const add = async (id: string) => {
      for (const iptables of ["iptables", "ip6tables"]) {
        await execa(iptables, ["-N", `CLAUDE-BOTTLE-${id}`]);
        await execa(iptables, ["-I", "INPUT", "1", "-i", `br-${id}`, "-j", `CLAUDE-BOTTLE-${id}`]);
      }
    };
    try {
      await add(stale);
      await add(live);
      expect((await rulesOf(stale)).ipv4).toEqual(guardOf(stale));
      const { spec } = await auto.bottle({ network: { mode: "none", allow: [] } });
      expect((await auto.start(spec).run).exitCode).toBe(0);
      expect(await rulesOf(stale)).toEqual({ ipv4: [], ipv6: [] });
      const kept = await rulesOf(live);
      expect(kept.ipv4).toEqual(guardOf(live));
      expect(kept.ipv6).toEqual(guardOf(live));
    } finally {
      for (const id of [stale, live]) {
        for (const iptables of ["iptables", "ip6tables"]) {
          await execa(iptables, ["-D", "INPUT", "-i", `br-${id}`, "-j", `CLAUDE-BOTTLE-${id}`]).catch(
            () => undefined,
          );
          await execa(iptables, ["-X", `CLAUDE-BOTTLE-${id}`]).catch(() => undefined);
        }
      }
      await docker(["network", "rm", liveNetwork], "removing the live network").catch(() => undefined);
    }
  });
});

describe("not root: a helper container from the agent image adds the rules", () => {
  it("allowlist mode: the same fence, added and removed by helper containers; the forwarder and the proxy work", async () => {
    const run = await probeRun(
      viaContainer,
      { network: { mode: "allowlist", allow: ["allowed.firewall.test"] } },
      {
        ...hostProbes(),
        "an allowed host through the proxy": { kind: "fetch", url: "http://allowed.firewall.test:8080/" },
      },
    );
    expectHostFenced(run);
    expectApiReached(run);
    expect(run.results["an allowed host through the proxy"]).toEqual({
      status: 200,
      text: "hello from the target",
    });
    expectRulesOnlyDuringTheRun(run);
    expect(run.result.warnings).toBeUndefined();
    // one container put the rules in, another took them out
    expect(await eventsOf(`${run.name}-firewall-1`, run.since)).toContain("start");
    expect(await eventsOf(`${run.name}-firewall-2`, run.since)).toContain("start");
  });

  it("an image without iptables: the bottle runs unguarded, and the run says so", async () => {
    const run = await probeRun(viaContainer, { network: { mode: "none", allow: [] } }, hostProbes(), {
      imageId: baseImage,
      imageRef: baseImage,
    });
    expect(run.result.warnings).toEqual([expect.stringMatching(/not fenced off from your machine/)]);
    expect(run.result.warnings![0]).toContain("a helper container: the image has no iptables");
    expect(run.results["the host's service through the gateway"]).toMatchObject({
      connected: true,
      reply: "host service\n",
    });
    expect(run.during).toEqual({ ipv4: [], ipv6: [] });
  });
});

describe("no way to add the rules", () => {
  it("the bottle runs unguarded and reaches the host's service; the run returns a warning", async () => {
    const run = await probeRun(noWay, { network: { mode: "none", allow: [] } }, hostProbes());
    expect(run.result.warnings).toEqual([expect.stringContaining("no way of adding them is enabled")]);
    expect(run.results["the host's service through the gateway"]).toMatchObject({
      connected: true,
      reply: "host service\n",
    });
    expect(run.reachedHost.length).toBeGreaterThan(0);
    expectApiReached(run);
  });
});
