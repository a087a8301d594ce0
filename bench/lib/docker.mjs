/**
 * A warm run on the Docker backend against the raw engine: `claude-bottle shell -- true` and
 * `claude-bottle run -- --version` (Claude Code's own --version) against a plain cached
 * `docker build` plus `docker run --rm` of the same image with the same mounts, limits, user and
 * hardening flags. A third variant adds what the bottle's isolation costs at the engine: a network
 * of its own, created before and removed after.
 *
 * Then where the time goes: the same run in this process, through the Docker backend with an image
 * engine that times every docker call, so each step (build, network, host services, docker run,
 * cleanup) gets its own line.
 */
import { randomBytes } from "node:crypto";
import { docker, dockerRunArgs } from "../../packages/backend-docker/dist/index.js";
import { ImageEngine } from "../../packages/core/dist/index.js";
import { interleave, now, summary, timeCommand, timeSequence } from "./measure.mjs";

export async function measureDockerRun({ setup, baselineBin, runs, log }) {
  const { env, workspace, imageRef, rawBuildArgs } = setup;
  const node = process.execPath;
  const cli = (args, bin = setup.cliBin) => timeCommand(node, [bin, ...args], { env, cwd: workspace });
  const specOf = async (args) => JSON.parse(await setup.cli(args)).spec;
  const shellSpec = await specOf(["shell", "--backend", "docker", "--dry-run", "--", "true"]);
  const versionSpec = await specOf(["run", "--backend", "docker", "--dry-run", "--", "--version"]);

  const rawName = () => `cb-bench-raw-${randomBytes(4).toString("hex")}`;
  // The same `docker run` arguments claude-bottle would pass, minus its network and host services,
  // and minus its labels, so that `claude-bottle ps` (and other people's tests) never see these.
  const rawRun = (spec, network = "bridge") => [
    "docker",
    withoutLabels(dockerRunArgs({ spec: { ...spec, name: rawName() }, image: imageRef, network })),
  ];
  const build = ["docker", rawBuildArgs];
  const withNetwork = async (spec) => {
    const network = rawName();
    return timeSequence([
      build,
      ["docker", ["network", "create", "--driver", "bridge", network]],
      rawRun(spec, network),
      ["docker", ["network", "rm", network]],
    ]);
  };

  const shell = ["shell", "--backend", "docker", "-q", "--", "true"];
  const variants = {
    "claude-bottle shell -- true": () => cli(shell),
    "raw docker build + run -- true": () => timeSequence([build, rawRun(shellSpec)]),
    "raw docker build + network + run -- true": () => withNetwork(shellSpec),
    "claude-bottle run -- --version": () => cli(["run", "--backend", "docker", "-q", "--", "--version"]),
    "raw docker build + run claude --version": () => timeSequence([build, rawRun(versionSpec)]),
  };
  if (baselineBin) variants["baseline: claude-bottle shell -- true"] = () => cli(shell, baselineBin);
  log(`docker: ${runs} interleaved runs of ${Object.keys(variants).length} variants (about 1 s each)`);
  const samples = await interleave(variants, { runs, warmup: 1 });
  const pairs = [
    ["claude-bottle shell -- true", "raw docker build + run -- true"],
    ["claude-bottle run -- --version", "raw docker build + run claude --version"],
    ["raw docker build + network + run -- true", "raw docker build + run -- true"],
    ...(baselineBin ? [["claude-bottle shell -- true", "baseline: claude-bottle shell -- true"]] : []),
  ];
  const overhead = Object.fromEntries(
    pairs.map(([variant, baseline]) => [
      `${variant} − ${baseline}`,
      summary(samples[variant].map((value, round) => value - samples[baseline][round])),
    ]),
  );

  log(`docker: ${runs} in-process runs with every docker call timed`);
  const steps = [];
  for (let round = -1; round < runs; round++) {
    const timeline = await timedRun(setup, shellSpec);
    if (round >= 0) steps.push(timeline);
  }
  return {
    variants: Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, summary(values)])),
    overhead,
    steps: stepSummary(steps),
    rawCommands: {
      build: `docker ${rawBuildArgs.join(" ")}`,
      run: `docker ${rawRun(shellSpec)[1].join(" ")}`,
    },
  };
}

/**
 * An image engine that records when each docker call starts and ends. It changes nothing else:
 * every call still goes to the real docker CLI.
 */
class TimedEngine extends ImageEngine {
  constructor(marks) {
    super();
    this.marks = marks;
  }
  mark(label, started) {
    this.marks.push({ label, start: started, end: now() });
  }
  async exec(args, ...rest) {
    const started = now();
    try {
      return await super.exec(args, ...rest);
    } finally {
      this.mark(labelOf(args), started);
    }
  }
  async build(options) {
    const started = now();
    try {
      return await super.build(options);
    } finally {
      this.mark("docker build", started);
    }
  }
  spawn(args, options) {
    const started = now();
    const child = super.spawn(args, options);
    child.then(
      () => this.mark(labelOf(args), started),
      () => this.mark(labelOf(args), started),
    );
    return child;
  }
}

function withoutLabels(args) {
  return args.filter((arg, i) => arg !== "--label" && args[i - 1] !== "--label");
}

function labelOf(args) {
  if (args[0] === "network" || args[0] === "image") return `docker ${args[0]} ${args[1]}`;
  // The one plain inspect of a run reads the bottle network's gateway.
  if (args[0] === "inspect") return "docker inspect (the network's gateway)";
  return `docker ${args[0]}`;
}

/** One prepare + run through the Docker backend, as `claude-bottle shell` does it, with every step timed. */
async function timedRun(setup, spec) {
  const marks = [];
  const engine = new TimedEngine(marks);
  const backend = docker({
    image: {
      kind: "bundled",
      base: setup.config.image.base,
      claudeCodeVersion: setup.config.claudeCode.version,
      ...(setup.config.tls && { extraCaCerts: setup.config.tls.extraCaCerts }),
    },
    cacheDir: setup.env.CLAUDE_BOTTLE_CACHE_DIR,
    dataDir: setup.env.CLAUDE_BOTTLE_DATA_DIR,
    registryImage: setup.config.registry.image,
    engine,
  });
  const name = `${spec.name.replace(/-[0-9a-f]+$/, "")}-${randomBytes(3).toString("hex")}`;
  const started = now();
  const prepared = await backend.prepare(setup.imageRef);
  const result = await backend.run(prepared, { ...spec, name, stdin: false });
  const ended = now();
  if (result.exitCode !== 0) throw new Error(`the timed run exited ${result.exitCode}`);
  // Between two docker calls claude-bottle works on its own: label the gaps too.
  const timeline = {};
  let cursor = started;
  let previous = "start";
  marks.sort((a, b) => a.start - b.start);
  for (const mark of marks) {
    const gap = mark.start - cursor;
    if (gap > 0) add(timeline, `claude-bottle between ${previous} and ${mark.label}`, gap);
    add(timeline, mark.label, mark.end - mark.start);
    cursor = Math.max(cursor, mark.end);
    previous = mark.label;
  }
  add(timeline, `claude-bottle after ${previous}`, ended - cursor);
  timeline.total = ended - started;
  return timeline;
}

function add(timeline, label, ms) {
  timeline[label] = (timeline[label] ?? 0) + ms;
}

function stepSummary(timelines) {
  const labels = [...new Set(timelines.flatMap((timeline) => Object.keys(timeline)))];
  return Object.fromEntries(
    labels.map((label) => [label, summary(timelines.map((timeline) => timeline[label] ?? 0))]),
  );
}
