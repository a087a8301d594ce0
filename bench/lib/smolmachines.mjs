/**
 * smolmachines `prepare` of the agent image (of a one-file image in a smoke run), with the smolvm
 * TEST DOUBLE standing in for smolvm (no KVM here; the double really pulls every blob from the
 * in-process registry, checks its digest and keeps the layer on disk, so the pack step moves the
 * same bytes):
 *
 * - a cache hit, through the CLI and in this process, against a raw cached `docker build`;
 * - a miss, step by step: build, export (docker create + docker export into one layer, hashed),
 *   tag + push into the in-process registry, pack. Each miss starts from an empty cache folder and
 *   an empty layer store of the double, so every run pays the whole pipeline.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { smolmachines } from "../../packages/backend-smolmachines/dist/index.js";
import { interleave, now, output, summary, timeCommand } from "./measure.mjs";
import { smolvmDouble } from "./setup.mjs";

export async function measureSmolmachines({ setup, runs, missRuns, tinyImage, log }) {
  const env = { ...setup.env, PATH: `${dirname(smolvmDouble)}:${setup.env.PATH}` };
  process.env.SMOLVM_DOUBLE_STATE = env.SMOLVM_DOUBLE_STATE;
  // The agent image, or (for a smoke run) a tiny image that pushes and packs in a moment.
  const subject = tinyImage ? await tinySubject(setup) : agentSubject(setup);
  const shared = {
    image: subject.source,
    dataDir: env.CLAUDE_BOTTLE_DATA_DIR,
    smolvm: smolvmDouble,
  };
  const node = process.execPath;
  const prepareCli = () =>
    timeCommand(node, [setup.cliBin, "prepare", "--backend", "smolmachines", "-q"], {
      env,
      cwd: subject.cwd,
    });

  log(`smolmachines: packing ${subject.imageRef} once, so the next prepares hit the cache`);
  await prepareCli();
  const warm = smolmachines({ ...shared, cacheDir: env.CLAUDE_BOTTLE_CACHE_DIR });

  log(`smolmachines: ${runs} interleaved runs of a cache hit (CLI and in-process) and a raw docker build`);
  const hit = await interleave(
    {
      "claude-bottle prepare (cache hit)": prepareCli,
      "prepare() in-process (cache hit)": async () => {
        const started = now();
        await warm.prepare(subject.imageRef);
        return now() - started;
      },
      "raw docker build (cached)": () => timeCommand("docker", subject.rawBuildArgs, { env }),
    },
    { runs, warmup: 1 },
  );

  log(`smolmachines: ${missRuns} cache misses of ${subject.imageRef}, each step timed`);
  const misses = [];
  for (let round = 0; round < missRuns; round++) {
    const cacheDir = join(setup.root, `miss-cache-${round}`);
    await mkdir(cacheDir);
    const steps = {};
    const progress = {
      async step(title, work) {
        const started = now();
        try {
          return await work();
        } finally {
          steps[title] = (steps[title] ?? 0) + now() - started;
        }
      },
    };
    const backend = smolmachines({ ...shared, cacheDir });
    const started = now();
    await backend.prepare(subject.imageRef, { progress });
    steps.total = now() - started;
    steps["other: sweep, cache lock and metadata, closing the registry, removing the export"] =
      steps.total - Object.entries(steps).reduce((sum, [title, ms]) => sum + (title === "total" ? 0 : ms), 0);
    misses.push(steps);
    await rm(cacheDir, { recursive: true, force: true });
    // The layers the double kept (hundreds of MB each for the agent image).
    await rm(join(env.SMOLVM_DOUBLE_STATE, "layers"), { recursive: true, force: true });
    log(`smolmachines: miss ${round + 1}/${missRuns} took ${(steps.total / 1000).toFixed(1)} s`);
  }
  await subject.cleanup();

  const hitSummary = Object.fromEntries(Object.entries(hit).map(([name, values]) => [name, summary(values)]));
  const overBuild = (name) =>
    summary(hit[name].map((value, round) => value - hit["raw docker build (cached)"][round]));
  const stepNames = [...new Set(misses.flatMap((steps) => Object.keys(steps)))];
  return {
    hit: hitSummary,
    hitOverhead: {
      "claude-bottle prepare (cache hit) − raw docker build (cached)": overBuild(
        "claude-bottle prepare (cache hit)",
      ),
      "prepare() in-process (cache hit) − raw docker build (cached)": overBuild(
        "prepare() in-process (cache hit)",
      ),
    },
    image: subject.imageRef,
    subject: tinyImage ? "tiny" : "bundled",
    miss: {
      steps: Object.fromEntries(
        stepNames.map((name) => [name, summary(misses.map((steps) => steps[name] ?? 0))]),
      ),
    },
  };
}

/** The agent image, as the Docker group builds it. */
function agentSubject(setup) {
  const { config } = setup;
  return {
    imageRef: setup.imageRef,
    cwd: setup.workspace,
    rawBuildArgs: setup.rawBuildArgs,
    source: {
      kind: "bundled",
      base: config.image.base,
      claudeCodeVersion: config.claudeCode.version,
      ...(config.tls && { extraCaCerts: config.tls.extraCaCerts }),
    },
    cleanup: async () => {},
  };
}

/** A one-file image from its own Dockerfile, in a project folder whose config file names it. */
async function tinySubject(setup) {
  const context = join(setup.root, "tiny-image");
  const cwd = join(setup.root, `cb-bench-tiny-${setup.suffix}`);
  await mkdir(context);
  await mkdir(cwd);
  const dockerfile = join(context, "Dockerfile");
  await writeFile(dockerfile, "FROM scratch\nCOPY payload /payload\n");
  await writeFile(join(context, "payload"), "claude-bottle benchmark\n");
  const imageRef = `cb-bench-tiny-${setup.suffix}:latest`;
  await writeFile(
    join(cwd, "claude-bottle.config.json"),
    JSON.stringify({ image: { ref: imageRef, dockerfile, context } }),
  );
  // A project config applies only once trusted, as for any user.
  await output(process.execPath, [setup.cliBin, "trust"], { env: setup.env, cwd });
  const { version } = setup.config.claudeCode;
  return {
    imageRef,
    cwd,
    // What claude-bottle runs for a Dockerfile of the user's (see core's buildAgentImage).
    rawBuildArgs: [
      "build",
      "--tag",
      imageRef,
      "--file",
      dockerfile,
      "--build-arg",
      `CLAUDE_CODE_VERSION=${version}`,
      "--label",
      "dev.claude-bottle.image=custom",
      context,
    ],
    source: { kind: "dockerfile", dockerfile, context, claudeCodeVersion: version },
    cleanup: () => output("docker", ["image", "rm", imageRef]).catch(() => {}),
  };
}
