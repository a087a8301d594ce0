/**
 * A warm run on the Docker backend against the raw engine: `claude-bottle shell -- true` and
 * `claude-bottle run -- --version` (Claude Code's own --version) against a plain cached
 * `docker build` plus `docker run --rm` of the same image with the same mounts, limits, user and
 * hardening flags, `--network none` included (the bottle's own network setting). What the raw side
 * lacks is claude-bottle's: the gateway container beside the bottle, the volume they share and the
 * relay inside.
 *
 * Then where the time goes: the same run in this process, through the Docker backend with an image
 * engine that times every docker call, so each step (build, the gateway image check, the bottle's
 * and the gateway's docker run, cleanup) gets its own line.
 */
import { randomBytes } from "node:crypto";
import { docker } from "../../packages/backend-docker/dist/index.js";
import { bottleRunArgs, ImageEngine } from "../../packages/container-engine/dist/index.js";
import { interleave, now, summary, timeCommand, timeSequence } from "./measure.mjs";

export async function measureDockerRun({ setup, baselineBin, runs, log }) {
  const { env, workspace, imageRef, rawBuildArgs } = setup;
  const node = process.execPath;
  const cli = (args, bin = setup.cliBin) => timeCommand(node, [bin, ...args], { env, cwd: workspace });
  const specOf = async (args) => JSON.parse(await setup.cli(args)).spec;
  const shellSpec = await specOf(["shell", "--backend", "docker", "--dry-run", "--", "true"]);
  const versionSpec = await specOf(["run", "--backend", "docker", "--dry-run", "--", "--version"]);

  const rawName = () => `cb-bench-raw-${randomBytes(4).toString("hex")}`;
  // The same `docker run` arguments claude-bottle would pass, minus its gateway (the shared volume
  // and the relay before the command), and minus its labels, so that `claude-bottle ps` (and other
  // people's tests) never see these.
  const rawRun = (spec) => [
    "docker",
    withoutLabels(
      bottleRunArgs(new ImageEngine(), {
        spec: { ...spec, name: rawName() },
        image: imageRef,
        network: "none",
      }),
    ),
  ];
  const build = ["docker", rawBuildArgs];

  const shell = ["shell", "--backend", "docker", "-q", "--", "true"];
  const variants = {
    "claude-bottle shell -- true": () => cli(shell),
    "raw docker build + run -- true": () => timeSequence([build, rawRun(shellSpec)]),
    "claude-bottle run -- --version": () => cli(["run", "--backend", "docker", "-q", "--", "--version"]),
    "raw docker build + run claude --version": () => timeSequence([build, rawRun(versionSpec)]),
  };
  if (baselineBin) variants["baseline: claude-bottle shell -- true"] = () => cli(shell, baselineBin);
  log(`docker: ${runs} interleaved runs of ${Object.keys(variants).length} variants (about 1 s each)`);
  const samples = await interleave(variants, { runs, warmup: 1 });
  const pairs = [
    ["claude-bottle shell -- true", "raw docker build + run -- true"],
    ["claude-bottle run -- --version", "raw docker build + run claude --version"],
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
    /** Calls still running: a run may return before its warm gateway's exec has exited. */
    this.pending = [];
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
    this.pending.push(
      child.then(
        () => this.mark(labelOf(args), started),
        () => this.mark(labelOf(args), started),
      ),
    );
    return child;
  }
}

function withoutLabels(args) {
  return args.filter((arg, i) => arg !== "--label" && args[i - 1] !== "--label");
}

function labelOf(args) {
  // A warm run asks about two images: whether the agent image of the last build is still good
  // (its tag and its base), and whether the gateway's image is there.
  if (args[0] === "image" && args[1] === "inspect")
    return args.some((arg) => arg.startsWith("claude-bottle-gateway"))
      ? "docker image inspect (the gateway image)"
      : "docker image inspect (the agent image)";
  if (args[0] === "volume" || args[0] === "image") return `docker ${args[0]} ${args[1]}`;
  // A gateway of the run's own is the run attached to its stdin; the project's warm gateway is
  // attached to with exec, and started (when there is none) detached.
  if (args[0] === "run" && args[1] === "--interactive" && args[4]?.endsWith("-gateway"))
    return "docker run (the gateway)";
  if (args[0] === "exec" && args[1] === "--interactive") return "docker exec (the warm gateway)";
  if (args[0] === "run" && args.includes("--detach")) return "docker run (starting the warm gateway)";
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
    engine,
  });
  const name = `${spec.name.replace(/-[0-9a-f]+$/, "")}-${randomBytes(3).toString("hex")}`;
  const started = now();
  const prepared = await backend.prepare(setup.imageRef);
  const result = await backend.run(prepared, { ...spec, name, stdin: false });
  const ended = now();
  if (result.exitCode !== 0) throw new Error(`the timed run exited ${result.exitCode}`);
  // The run has returned (what the user waits for); the gateway's exec may end a little later, and
  // the run no longer holds this process open for it.
  const holdOpen = setInterval(() => {}, 1000);
  await Promise.allSettled(engine.pending);
  clearInterval(holdOpen);
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
  // Nothing of claude-bottle's own after the last call when that call outlasted the run.
  add(timeline, `claude-bottle after ${previous}`, Math.max(0, ended - cursor));
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
