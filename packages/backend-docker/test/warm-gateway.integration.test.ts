// A project's warm gateway (container-engine's warm-gateway.ts, the gateway package's warm.ts) from
// inside real bottles: one gateway container per project serves each of its runs from a folder of
// the run's own, with the run's own credential, placeholder and policy, and keeps none of it once
// the run ends. The agent in each bottle is the adversary: it runs test/fixtures/warm-agent.mjs,
// which tries the other runs' folders and sockets, its own end socket and the proxy, and reports
// what happened. The API is core's Anthropic API double (a named test double), which the gateway
// reaches at the engine's address for this machine; every bottle gets a fake key of its own, so the
// double's record shows whose key went out for whom.
import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { urlForEngine } from "@claude-bottle/container-engine/testing";
import { BottleError, type RunResult, type RunSpec, type RunSpecInput } from "@claude-bottle/core";
import { type AnthropicApiDouble, startAnthropicApiDouble } from "@claude-bottle/core/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engine, runsServedBy, until, useDockerBackend, warmGatewayOf } from "./support.js";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "fixtures");
const runs = "/run/claude-bottle/runs";

const { backend, bottle, start, prepared } = useDockerBackend();
// Gone after 3 s without a run: what the idle stop does, without waiting minutes for it.
const quick = useDockerBackend({ warmGatewayMinutes: 0.05 });

let api: AnthropicApiDouble;
let apiUrl = "";
beforeAll(async () => {
  api = await startAnthropicApiDouble({ turns: [], host: "0.0.0.0" });
  apiUrl = await urlForEngine(api.url, engine);
});
afterAll(async () => {
  await api?.close();
});

/** One step of warm-agent.mjs's plan (see there). */
type Step =
  | { do: "ownRunId" | "touch" | "waitFor" | "sleep"; as?: string; file?: string; ms?: number }
  | { do: "list" | "stat" | "write" | "connect"; as: string; path: string }
  | { do: "api"; as: string; socket?: string }
  | { do: "connectThroughProxy"; as: string; host: string };

const ready: Step = { do: "touch", file: "ready-{tag}" };
/**
 * The runs `gateway` serves, once there are `count`: a bottle's command does not wait for its run to
 * be attached (the relay holds connections until then), so a run may still be on its way in.
 */
async function runsAttached(gateway: string, count: number): Promise<string[]> {
  return until(`${count} run(s) attached to ${gateway}`, async () => {
    const runs = await runsServedBy(gateway);
    return runs.length === count ? runs : undefined;
  });
}

const untilGo: Step = { do: "waitFor", file: "go-{tag}" };
const ownApi = `${runs}/{own}/api.sock`;

interface AgentBottle {
  spec: RunSpec;
  workspace: string;
  /** The fake API key of this run. */
  key: string;
  /** Start the run in the background (aborted after the test if it is still going). */
  start(): { run: Promise<RunResult> };
  /** Resolves once the agent has done the steps before `ready`; rejects if its run ends first. */
  ready(): Promise<void>;
  /** Let the agent go on past `untilGo`. */
  go(): Promise<void>;
  /** What the agent reported so far. */
  report(): Promise<Record<string, unknown>>;
}

/**
 * A bottle whose command is the adversary's plan, with a fake key of its own; with `project`, a new
 * run (another name, another home) in that one's workspace.
 */
async function agentBottle(
  plan: Step[],
  overrides: Partial<RunSpecInput> = {},
  options: { owner?: { uid: number; gid: number }; project?: AgentBottle } = {},
): Promise<AgentBottle> {
  const key = `sk-ant-api03-TESTSECRET-${randomBytes(8).toString("hex")}`;
  const tag = randomBytes(4).toString("hex");
  const made = await bottle(
    {
      secrets: { ANTHROPIC_API_KEY: key },
      anthropicBaseUrl: apiUrl,
      mounts: [{ source: fixtures, target: "/agent", readOnly: true }],
      command: ["node", "/agent/warm-agent.mjs", JSON.stringify(plan), tag],
      ...(options.project && { workspace: options.project.workspace }),
      ...overrides,
    },
    options.owner,
  );
  const workspace = made.spec.workspace;
  let run: Promise<RunResult> | undefined;
  return {
    spec: made.spec,
    workspace,
    key,
    start: () => {
      const started = start(made.spec).run;
      run = started;
      return { run: started };
    },
    ready: async () => {
      const ended = (run ?? new Promise<never>(() => {})).then((result) => {
        throw new Error(`${made.spec.name} ended before it was ready: ${JSON.stringify(result)}`);
      });
      await Promise.race([
        until(`${made.spec.name} to be ready`, async () =>
          (await readdir(workspace)).includes(`ready-${tag}`) ? true : undefined,
        ),
        ended,
      ]);
    },
    go: () => writeFile(join(workspace, `go-${tag}`), ""),
    report: async () =>
      JSON.parse(await readFile(join(workspace, `report-${tag}.json`), "utf8")) as Record<string, unknown>,
  };
}

/** The same project (workspace) again, as a new run. */
function again(project: AgentBottle, plan: Step[], overrides: Partial<RunSpecInput> = {}) {
  return agentBottle(plan, overrides, { project });
}

async function containerId(name: string): Promise<string> {
  return String((await engine.inspect(name)).Id);
}

/** The volumes a running container mounts, by name, with where and how. */
async function volumesOf(name: string): Promise<{ Name: string; Destination: string; RW: boolean }[]> {
  const mounts = (await engine.inspect(name)).Mounts as {
    Type: string;
    Name: string;
    Destination: string;
    RW: boolean;
  }[];
  return mounts
    .filter((mount) => mount.Type === "volume")
    .map(({ Name, Destination, RW }) => ({ Name, Destination, RW }));
}

/** Whether `path` exists in the gateway, as the gateway's own root sees it. */
async function existsInGateway(gateway: string, path: string): Promise<boolean> {
  const result = await engine.spawn(["exec", gateway, "test", "-e", path], { reject: false });
  return result.exitCode === 0;
}

/** Every process's environment and argv in the gateway. */
function gatewayProcesses(gateway: string): Promise<string> {
  return engine.exec(
    ["exec", gateway, "sh", "-c", "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline; true"],
    "RUN_FAILED",
    "reading the gateway's processes",
  );
}

/** The API keys the double saw on requests so far. */
function keysSeen(): string[] {
  return api.requests.map((request) => String(request.headers["x-api-key"]));
}

async function containerExists(name: string): Promise<boolean> {
  const out = await engine.exec(
    ["ps", "--all", "--filter", `name=^${name}$`, "--format", "{{.ID}}"],
    "RUN_FAILED",
    "listing",
  );
  return out.trim() !== "";
}

async function volumeExists(name: string): Promise<boolean> {
  return (await engine.volumeNames()).includes(name);
}

describe("a project's warm gateway (real engine, API double)", () => {
  it("serves every run of a project from one container; another project gets its own; a bottle sees only `runs` and mounts only its project's volume", async () => {
    // The command starts beside the gateway: once an API request has gone through, the run's
    // services are up, and so is everything the gateway puts in the shared folder.
    const plan: Step[] = [
      { do: "api", as: "api" },
      { do: "list", as: "shared", path: "/run/claude-bottle" },
      ready,
      untilGo,
    ];
    const first = await agentBottle(plan);
    const firstRun = first.start();
    await first.ready();
    const gateway = await warmGatewayOf(first.workspace);
    const gatewayId = await containerId(gateway);
    expect(await volumesOf(first.spec.name)).toEqual([
      { Name: gateway, Destination: "/run/claude-bottle", RW: false },
    ]);
    await first.go();
    expect(await firstRun.run).toEqual({ exitCode: 0, deniedHosts: [] });
    expect((await first.report()).shared).toEqual(["runs"]);

    // The same project again, and meanwhile another project.
    const second = await again(first, plan);
    const other = await agentBottle(plan);
    const secondRun = second.start();
    const otherRun = other.start();
    await second.ready();
    await other.ready();
    expect(await warmGatewayOf(second.workspace)).toBe(gateway);
    expect(await containerId(gateway)).toBe(gatewayId);
    expect(await volumesOf(second.spec.name)).toEqual([
      { Name: gateway, Destination: "/run/claude-bottle", RW: false },
    ]);
    const otherGateway = await warmGatewayOf(other.workspace);
    expect(otherGateway).not.toBe(gateway);
    expect(await containerId(otherGateway)).not.toBe(gatewayId);
    expect(await volumesOf(other.spec.name)).toEqual([
      { Name: otherGateway, Destination: "/run/claude-bottle", RW: false },
    ]);
    await second.go();
    await other.go();
    expect(await secondRun.run).toEqual({ exitCode: 0, deniedHosts: [] });
    expect(await otherRun.run).toEqual({ exitCode: 0, deniedHosts: [] });
    expect((await second.report()).shared).toEqual(["runs"]);
    expect((await other.report()).shared).toEqual(["runs"]);
  });

  it("a bottle, even as uid 0, can neither list nor guess another run's folder; with its id leaked, that run's forwarder refuses it", async () => {
    const root = { uid: 0, gid: 0 };
    const a = await agentBottle([ready, untilGo], { user: root }, { owner: root });
    const aRun = a.start();
    await a.ready();
    const gateway = await warmGatewayOf(a.workspace);
    const [aRunId, ...more] = await runsAttached(gateway, 1);
    expect(more).toEqual([]);
    const guess = randomBytes(16).toString("base64url");
    // B gets A's run id as if it had leaked (its own argument); everything else it finds itself.
    const b = await again(
      a,
      [
        { do: "list", as: "listRuns", path: runs },
        { do: "stat", as: "guessed", path: `${runs}/${guess}` },
        { do: "stat", as: "ownFolder", path: `${runs}/{own}` },
        // nor plant anything where the gateway or another run would find it
        { do: "write", as: "plantInRuns", path: `${runs}/planted` },
        { do: "write", as: "plantInOwn", path: `${runs}/{own}/planted` },
        { do: "api", as: "ownSocket", socket: ownApi },
        { do: "api", as: "othersSocket", socket: `${runs}/${aRunId}/api.sock` },
      ],
      { user: root },
    );
    const requestsBefore = api.requests.length;
    const bResult = await b.start().run;
    const report = await b.report();
    await a.go();
    expect(await aRun.run).toEqual({ exitCode: 0, deniedHosts: [] });
    expect(bResult).toEqual({ exitCode: 0, deniedHosts: [] });

    expect(report.listRuns).toBe("EACCES");
    expect(report.guessed).toBe("ENOENT");
    expect(report.plantInRuns).toBe("EROFS");
    expect(report.plantInOwn).toBe("EROFS");
    // the way B tried A's socket works for its own: the refusal is A's forwarder's
    expect(report.ownFolder).toBe("exists");
    expect(report.ownSocket).toMatchObject({ status: 200 });
    expect(report.othersSocket).toMatchObject({ status: 401 });
    expect((report.othersSocket as { body: string }).body).toContain("placeholder");
    const seen = keysSeen().slice(requestsBefore);
    expect(seen).toEqual([b.key]);
    expect(keysSeen()).not.toContain(a.key);
  });

  it("once a run ends the gateway holds nothing of it: no folder, no sockets, no key in any process", async () => {
    const a = await agentBottle([{ do: "api", as: "api" }, ready, untilGo]);
    const aRun = a.start();
    await a.ready();
    const gateway = await warmGatewayOf(a.workspace);
    const [aRunId] = await runsServedBy(gateway);
    expect(aRunId).toBeDefined();
    const during = await gatewayProcesses(gateway);
    // the search reads the gateway's processes, the run's attachment among them
    expect(during).toContain("attach.mjs");
    expect(during).not.toContain(a.key);
    await a.go();
    expect(await aRun.run).toEqual({ exitCode: 0, deniedHosts: [] });
    expect((await a.report()).api).toMatchObject({ status: 200 });
    expect(keysSeen()).toContain(a.key);

    // Gone by the time the run returns: the gateway removes it before it says "closed", and the run
    // returns once it has heard that, without waiting for its exec to exit.
    expect(await existsInGateway(gateway, `${runs}/${aRunId}`)).toBe(false);
    expect(await runsServedBy(gateway)).toEqual([]);
    expect(await existsInGateway(gateway, runs)).toBe(true);
    expect(await gatewayProcesses(gateway)).not.toContain(a.key);

    // A later bottle of the project, given the old id, finds nothing there.
    const later = await again(a, [
      { do: "stat", as: "folder", path: `${runs}/${aRunId}` },
      { do: "connect", as: "api", path: `${runs}/${aRunId}/api.sock` },
      { do: "connect", as: "end", path: `${runs}/${aRunId}/end.sock` },
      { do: "connect", as: "own", path: ownApi },
    ]);
    expect(await later.start().run).toEqual({ exitCode: 0, deniedHosts: [] });
    expect(await later.report()).toEqual({
      folder: "ENOENT",
      api: "ENOENT",
      end: "ENOENT",
      own: "connected",
    });
  });

  it("each run has its own egress policy: a host allowed for one concurrent run is denied to the other", async () => {
    const host = `allowed-${randomBytes(4).toString("hex")}.warm.test`;
    const plan: Step[] = [ready, untilGo, { do: "connectThroughProxy", as: "connect", host }];
    const a = await agentBottle(plan, { network: { mode: "allowlist", allow: [host] } });
    const b = await again(a, plan);
    const aRun = a.start();
    const bRun = b.start();
    await a.ready();
    await b.ready();
    // both attached to the one gateway at once (a bottle's command does not wait for its run to be
    // attached, so the runs may still be on their way in)
    const gateway = await warmGatewayOf(a.workspace);
    await runsAttached(gateway, 2);
    await a.go();
    await b.go();
    const [aResult, bResult] = await Promise.all([aRun.run, bRun.run]);

    // A's proxy let the name through (it does not resolve here: 502); B's refused it.
    const aConnect = (await a.report()).connect as { status: number; text: string };
    const bConnect = (await b.report()).connect as { status: number; text: string };
    expect(aConnect.status).not.toBe(403);
    expect(aConnect.text).toContain("could not resolve");
    expect(aResult.deniedHosts).toEqual([]);
    expect(bConnect.status).toBe(403);
    expect((bResult.deniedHosts ?? []).join(" ")).toContain(host);
    expect(bResult.exitCode).toBe(0);
  });

  it("a bottle that says it is done on its own end socket cuts off only its own run", async () => {
    const a = await agentBottle([
      { do: "api", as: "before" },
      { do: "connect", as: "end", path: `${runs}/{own}/end.sock` },
      { do: "sleep", ms: 1500 },
      { do: "api", as: "after" },
      ready,
      untilGo,
    ]);
    const b = await again(a, [ready, untilGo, { do: "api", as: "api" }]);
    const bRun = b.start();
    await b.ready();
    const gateway = await warmGatewayOf(a.workspace);
    const bRuns = await runsAttached(gateway, 1);
    const aRun = a.start();
    await a.ready();
    const aReport = await a.report();
    expect(aReport.before).toMatchObject({ status: 200 });
    expect(aReport.end).toBe("connected");
    expect(aReport.after).not.toMatchObject({ status: 200 });
    // B's run is still served, A's is not
    expect(await runsServedBy(gateway)).toEqual(bRuns);
    await b.go();
    expect(await bRun.run).toEqual({ exitCode: 0, deniedHosts: [] });
    expect((await b.report()).api).toMatchObject({ status: 200 });
    expect(keysSeen()).toContain(b.key);
    await a.go();
    expect((await aRun.run).exitCode).toBe(0);
  });

  it("a warm gateway removed while idle is started again by the next run", async () => {
    const plan: Step[] = [{ do: "api", as: "api" }];
    const first = await agentBottle(plan);
    expect(await backend.run(prepared(), first.spec)).toEqual({ exitCode: 0, deniedHosts: [] });
    const gateway = await warmGatewayOf(first.workspace);
    const firstId = await containerId(gateway);
    await engine.exec(["rm", "--force", gateway], "RUN_FAILED", "removing the gateway");

    const second = await again(first, plan);
    expect(await backend.run(prepared(), second.spec)).toEqual({ exitCode: 0, deniedHosts: [] });
    expect((await second.report()).api).toMatchObject({ status: 200 });
    expect(await warmGatewayOf(second.workspace)).toBe(gateway);
    expect(await containerId(gateway)).not.toBe(firstId);
  });

  it("stopping a warm gateway fails the run attached to it and removes the gateway with its volume", async () => {
    const a = await agentBottle([ready, untilGo]);
    const aRun = a.start();
    await a.ready();
    const gateway = await warmGatewayOf(a.workspace);
    const listed = (await backend.listBottles?.()) ?? [];
    expect(listed.find((entry) => entry.name === gateway)).toMatchObject({ kept: true });
    await backend.stopBottle?.(gateway);
    const error = await aRun.run.catch((caught: unknown) => caught);
    expect(BottleError.is(error) && error.code).toBe("RUN_FAILED");
    expect((error as BottleError).message).toMatch(/stopped unexpectedly/);
    expect(await containerExists(gateway)).toBe(false);
    expect(await containerExists(a.spec.name)).toBe(false);
    expect(await volumeExists(gateway)).toBe(false);
  });

  it("a warm gateway stops by itself once idle for its time, not while a run lasts; the next run starts a new one", async () => {
    const plan: Step[] = [{ do: "api", as: "api" }];
    // longer than the idle time, then the API: the gateway must still be there
    const first = await agentBottle([
      { do: "sleep", ms: 4_500 },
      { do: "api", as: "api" },
    ]);
    const firstRun = quick.backend.run(quick.prepared(), first.spec);
    const gateway = await warmGatewayOf(first.workspace);
    const firstId = await containerId(gateway);
    expect(await firstRun).toEqual({ exitCode: 0, deniedHosts: [] });
    expect((await first.report()).api).toMatchObject({ status: 200 });
    const ended = Date.now();
    await until(
      "the idle gateway to stop",
      async () => ((await containerExists(gateway)) ? undefined : true),
      10_000,
    );
    const gone = Date.now() - ended;
    // not at once: the idle time runs from the end of the run's session, just before the run returns
    expect(gone).toBeGreaterThanOrEqual(1_000);
    expect(gone).toBeLessThan(10_000);

    const second = await again(first, plan);
    expect(await quick.backend.run(quick.prepared(), second.spec)).toEqual({ exitCode: 0, deniedHosts: [] });
    expect((await second.report()).api).toMatchObject({ status: 200 });
    expect(await containerId(gateway)).not.toBe(firstId);
    // now, rather than after the file, when it may have stopped by itself and left its volume
    await quick.backend.stopBottle?.(gateway);
    expect(await volumeExists(gateway)).toBe(false);
  });

  it("a CLI killed outright (its exec gone) ends its run's session: the folder goes at once", async () => {
    const a = await agentBottle([ready, untilGo]);
    const aRun = a.start();
    await a.ready();
    const gateway = await warmGatewayOf(a.workspace);
    const [aRunId] = await runsAttached(gateway, 1);
    expect(aRunId).toBeDefined();
    const exec = await attachProcessOf(gateway);
    process.kill(exec, "SIGKILL");
    // The engine closes the exec's stdin once it sees its client gone: at once here (about 65 ms),
    // but it took over 5 s once under CI's load on the second engine; without it, never.
    await until(
      "the run's folder to go",
      async () => ((await existsInGateway(gateway, `${runs}/${aRunId}`)) ? undefined : true),
      30_000,
    );
    expect(await runsServedBy(gateway)).toEqual([]);
    // the CLI, still here, sees its gateway gone and fails the run
    const error = await aRun.run.catch((caught: unknown) => caught);
    expect(BottleError.is(error) && error.code).toBe("RUN_FAILED");
  });
});

/** The host's `docker exec … attach.mjs` process attached to `gateway` (one run attached). */
async function attachProcessOf(gateway: string): Promise<number> {
  const found: number[] = [];
  for (const pid of (await readdir("/proc")).filter((entry) => /^\d+$/.test(entry))) {
    const argv = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
    if (argv.includes("exec") && argv.includes(gateway) && argv.some((arg) => arg.endsWith("/attach.mjs")))
      found.push(Number(pid));
  }
  expect(found).toHaveLength(1);
  return found[0]!;
}
