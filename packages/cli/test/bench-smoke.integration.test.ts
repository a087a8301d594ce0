// The benchmark harness (bench/run.mjs) in its smoke mode: one or two samples of every
// comparison, against the real Docker engine, the built CLI, the smolvm double and (for the
// interactive TUI, in tmux) the real Claude Code against the Anthropic API double. It checks that
// every row is measured and reported; it never looks at how fast anything was.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { integrationEnvironment } from "@claude-bottle/container-engine/testing";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const harness = fileURLToPath(new URL("../../../bench/run.mjs", import.meta.url));
const env = integrationEnvironment();
let out: string;

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), "cb-bench-smoke-it-"));
});
afterAll(() => rm(out, { recursive: true, force: true }));

/** Every sample is a measurement: a finite number above zero, as many as the run asked for. */
function expectMeasured(
  rows: Record<string, { median: number; samples: number[] }>,
  names: string[],
  count = 2,
) {
  expect(Object.keys(rows)).toEqual(names);
  for (const name of names) {
    expect(rows[name]!.samples, name).toHaveLength(count);
    for (const sample of rows[name]!.samples) expect(Number.isFinite(sample), name).toBe(true);
  }
}

describe("bench/run.mjs --smoke", () => {
  it("measures and reports every comparison", async () => {
    const json = join(out, "results.json");
    const markdown = join(out, "BENCHMARKS.md");
    const run = await execa(
      process.execPath,
      [
        harness,
        "--smoke",
        "--image",
        "claude-bottle-test-agent:latest",
        "--json",
        json,
        "--markdown",
        markdown,
      ],
      {
        reject: false,
        stdin: "ignore",
        env: {
          CLAUDE_BOTTLE_BASE_IMAGE: env.baseImage,
        },
      },
    );
    expect(run.exitCode, run.stderr).toBe(0);
    const results = JSON.parse(await readFile(json, "utf8"));
    expect(results).toMatchObject({ kind: "smoke", runs: 2, missRuns: 1 });
    expect(results.machine.loadAverageAtStart).toHaveLength(3);

    expectMeasured(results.startup, ["node -e 0", "claude-bottle --version", "claude-bottle --help"]);

    expectMeasured(results.docker.variants, [
      "claude-bottle shell -- true",
      "raw docker build + run -- true",
      "claude-bottle run -- --version",
      "raw docker build + run claude --version",
    ]);
    expect(Object.keys(results.docker.overhead)).toHaveLength(2);
    // The step breakdown saw every docker call a warm run makes: the one question that finds the
    // last build still good (no build), the attachment to the project's warm gateway, and the
    // bottle's run.
    expect(Object.keys(results.docker.steps)).toEqual(
      expect.arrayContaining([
        "docker image inspect (the agent image)",
        "docker exec (the warm gateway)",
        "docker run",
        "total",
      ]),
    );
    expect(Object.keys(results.docker.steps)).not.toContain("docker build");

    expectMeasured(results.smolmachines.hit, [
      "claude-bottle prepare (cache hit)",
      "prepare() in-process (cache hit)",
      "raw docker build (cached)",
    ]);
    expect(Object.keys(results.smolmachines.miss.steps)).toEqual(
      expect.arrayContaining([
        "build agent image",
        "export image",
        "push to local registry",
        "pack with smolvm",
        "total",
      ]),
    );
    expect(results.smolmachines.miss.steps["pack with smolvm"].samples).toHaveLength(1);

    expectMeasured(results.egress.latencyMs, [
      "direct",
      "relay",
      "http-relay",
      "forwarder",
      "proxy-http",
      "proxy-connect",
      "direct-new-connection",
      "proxy-connect-new-tunnel",
    ]);
    expectMeasured(results.egress.throughputMiBps, [
      "direct",
      "relay",
      "http-relay",
      "forwarder",
      "proxy-http",
      "proxy-connect",
    ]);

    expectMeasured(results.rss, [
      "claude-bottle shell -- true (docker)",
      "claude-bottle run -- --version (docker)",
      "claude-bottle --version",
    ]);

    // The interactive TUI until its prompt shows, in a real terminal, on both sides.
    expectMeasured(results.tui.variants, ["claude-bottle run (TUI)", "raw docker run -it claude (TUI)"]);
    expect(Object.keys(results.tui.overhead)).toHaveLength(1);
    expect(results.tuiRuns).toBe(2);

    // Every target from the issues has a verdict, whichever way it went; a number asked for
    // without a target is reported as such.
    expect([...new Set(results.targets.map((target: { id: string }) => target.id))]).toEqual([
      "1",
      "2",
      "2b",
      "2c",
      "3",
      "3b",
      "4",
      "5",
    ]);
    for (const target of results.targets) {
      if (target.target === "reported") expect(target.met, target.name).toBeNull();
      else expect(typeof target.met, target.name).toBe("boolean");
    }

    const report = await readFile(markdown, "utf8");
    expect(report).toContain("<!-- bench:results:start");
    expect(report).toContain("SMOKE RUN");
    for (const heading of ["### Targets", "### 1.", "### 2.", "### 3.", "### 4.", "### 5.", "### 6."]) {
      expect(report).toContain(heading);
    }
  });
});
