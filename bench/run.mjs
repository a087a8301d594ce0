#!/usr/bin/env node
/**
 * claude-bottle's benchmarks, in one command (`scripts/bench.sh`, or `pnpm bench` with a built
 * tree and the image variables set). Each comparison runs its variants interleaved, in one run on
 * one machine, and reports medians with their range. Results go to a JSON file and to the results
 * section of BENCHMARKS.md; the rest of that file is prose and is left alone.
 *
 *   node bench/run.mjs [--runs N] [--miss-runs N] [--tui-runs N]
 *                      [--only startup,docker,smolmachines,egress,rss,tui]
 *                      [--json FILE] [--markdown FILE] [--smoke] [--compare-with DIR]
 *
 * --smoke runs everything once or twice with a small download and a tiny image for the smolmachines
 * miss, to check that the harness works (CI does this); it writes to a temporary folder unless told
 * otherwise, and never fails on timings.
 *
 * --tui-runs N sets the rounds of the interactive TUI comparison alone (5 by default): each round
 * starts Claude Code's TUI twice and leaves it again, about 10 s.
 *
 * --compare-with DIR adds the CLI of another built checkout (the commit before a change, say) to the
 * start-up, Docker and memory comparisons, interleaved with this one: the way to see what a change
 * did, since numbers from separate runs differ by more than most changes.
 */
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { measureEgress } from "./egress.bench.mjs";
import { measureDockerRun } from "./lib/docker.mjs";
import { machineInfo } from "./lib/machine.mjs";
import { renderMarkdown, updateMarkdownFile } from "./lib/report.mjs";
import { measurePeakRss } from "./lib/rss.mjs";
import { cliBin, createSetup, repoRoot } from "./lib/setup.mjs";
import { measureSmolmachines } from "./lib/smolmachines.mjs";
import { measureStartup } from "./lib/startup.mjs";
import { evaluateTargets } from "./lib/targets.mjs";
import { measureTuiPrompt } from "./lib/tui.mjs";

const groups = ["startup", "docker", "smolmachines", "egress", "rss", "tui"];
const { values } = parseArgs({
  options: {
    runs: { type: "string" },
    "miss-runs": { type: "string" },
    "tui-runs": { type: "string" },
    only: { type: "string" },
    json: { type: "string" },
    markdown: { type: "string" },
    smoke: { type: "boolean", default: false },
    image: { type: "string", default: "claude-bottle-bench-agent:latest" },
    "compare-with": { type: "string" },
  },
});
const smoke = values.smoke;
const bounded = (value, min, max, fallback) =>
  value === undefined ? fallback : Math.min(Math.max(Math.trunc(Number(value)) || min, min), max);
// A full run takes medians over at least 5 runs; a smoke run only checks that everything works.
const runs = bounded(values.runs, smoke ? 1 : 5, 100, smoke ? 2 : 7);
const missRuns = bounded(values["miss-runs"], smoke ? 1 : 5, 20, smoke ? 1 : 5);
// Fewer rounds than the other comparisons: each is two TUI starts and exits, about 10 s.
const tuiRuns = bounded(values["tui-runs"], smoke ? 1 : 3, 50, smoke ? runs : 5);
const only = values.only ? values.only.split(",").map((name) => name.trim()) : groups;
for (const name of only) if (!groups.includes(name)) throw new Error(`unknown group ${name}: use ${groups}`);

let jsonPath = values.json;
let markdownPath = values.markdown;
if (smoke && (!jsonPath || !markdownPath)) {
  const dir = await mkdtemp(join(tmpdir(), "cb-bench-smoke-"));
  jsonPath ??= join(dir, "results.json");
  markdownPath ??= join(dir, "BENCHMARKS.md");
}
jsonPath ??= join(repoRoot, "bench/results/latest.json");
markdownPath ??= join(repoRoot, "BENCHMARKS.md");

const log = (line) => process.stderr.write(`bench: ${line}\n`);
const baselineBin = values["compare-with"]
  ? join(resolve(values["compare-with"]), "packages/cli/dist/bin.js")
  : undefined;
const started = Date.now();
const results = {
  kind: smoke ? "smoke" : "full",
  runs,
  missRuns,
  ...(only.includes("tui") && { tuiRuns }),
  machine: { ...(await machineInfo()), loadAverageAtStart: loadAverage() },
  ...(baselineBin && { baseline: baselineBin }),
};

const needsSetup = only.some((name) => ["docker", "smolmachines", "rss", "tui"].includes(name));
const setup = needsSetup ? await createSetup({ image: values.image, log }) : undefined;
try {
  if (only.includes("startup")) {
    results.startup = await measureStartup({ bin: cliBin, baselineBin, runs: smoke ? runs : runs * 3, log });
  }
  if (only.includes("docker")) results.docker = await measureDockerRun({ setup, baselineBin, runs, log });
  if (only.includes("smolmachines")) {
    results.smolmachines = await measureSmolmachines({ setup, runs, missRuns, tinyImage: smoke, log });
  }
  if (only.includes("egress")) {
    log(
      `egress: ${runs} runs, ${smoke ? 50 : 400} requests per path and run, ${smoke ? 5 : 100} MiB downloads`,
    );
    results.egress = await measureEgress({ requests: smoke ? 50 : 400, megabytes: smoke ? 5 : 100, runs });
  }
  if (only.includes("rss")) results.rss = await measurePeakRss({ setup, baselineBin, runs, log });
  if (only.includes("tui")) results.tui = await measureTuiPrompt({ setup, runs: tuiRuns, log });
} finally {
  await setup?.cleanup();
}

results.machine.loadAverageAtEnd = loadAverage();
results.durationSeconds = Math.round((Date.now() - started) / 1000);
results.targets = evaluateTargets(results);
await mkdir(dirname(jsonPath), { recursive: true });
await writeFile(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
await updateMarkdownFile(markdownPath, renderMarkdown(results));
log(`wrote ${jsonPath} and ${markdownPath} in ${results.durationSeconds} s`);
for (const target of results.targets) {
  const verdict = target.met === null ? "info" : target.met ? "met " : "MISS";
  log(`${verdict} ${target.name}: ${target.measured} (target ${target.target})`);
}

function loadAverage() {
  return loadavg().map((value) => Math.round(value * 100) / 100);
}
