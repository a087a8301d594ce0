/**
 * The world the Docker and smolmachines groups run in: a throwaway project folder, data, cache and
 * config folders, the environment the claude-bottle process gets, and the plain `docker build`
 * that makes the same agent image claude-bottle builds (the raw baseline).
 */
import { randomBytes } from "node:crypto";
import { chown, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { output } from "./measure.mjs";

export const repoRoot = new URL("../../", import.meta.url).pathname;
export const cliBin = join(repoRoot, "packages/cli/dist/bin.js");
export const smolvmDouble = join(
  repoRoot,
  "packages/backend-smolmachines/test/fixtures/smolvm-double/smolvm",
);
const bundledDockerfile = join(repoRoot, "packages/container-engine/agent-image/Dockerfile");

export async function createSetup({ image, log }) {
  const root = await mkdtemp(join(tmpdir(), "cb-bench-"));
  const suffix = randomBytes(3).toString("hex");
  // The project folder's name becomes part of every bottle's name: make it unmistakably ours.
  const workspace = join(root, `cb-bench-${suffix}`);
  await mkdir(workspace);
  // A project belongs to a regular user; as root, hand it to uid 1000 so the bottle runs as its owner.
  if (process.getuid?.() === 0) await chown(workspace, 1000, 1000);
  const smolvmState = join(root, "smolvm-state");
  await mkdir(smolvmState);

  const env = { ...process.env };
  // Only what the benchmark sets decides the backend, the image and the folders.
  for (const name of Object.keys(env)) {
    if (name.startsWith("CLAUDE_BOTTLE_") && name !== "CLAUDE_BOTTLE_BASE_IMAGE") delete env[name];
  }
  Object.assign(env, {
    CLAUDE_BOTTLE_IMAGE: image,
    CLAUDE_BOTTLE_DATA_DIR: join(root, "data"),
    CLAUDE_BOTTLE_CACHE_DIR: join(root, "cache"),
    XDG_CONFIG_HOME: join(root, "config"),
    SMOLVM_DOUBLE_STATE: smolvmState,
  });

  const cli = (args) => output(process.execPath, [cliBin, ...args], { env, cwd: workspace });
  const { config } = JSON.parse(await cli(["config", "--json"]));

  // The raw baseline builds from the same Dockerfile, CA bundle and build arguments.
  const context = join(root, "raw-build");
  await mkdir(context);
  await copyFile(bundledDockerfile, join(context, "Dockerfile"));
  const ca = config.tls?.extraCaCerts ? await readFile(config.tls.extraCaCerts, "utf8") : "";
  await writeFile(join(context, "extra-ca-certificates.pem"), ca);
  // Exactly claude-bottle's build, labels included: it makes the same image (the same id) under
  // the same tag, as a build that a user runs by hand beside claude-bottle would.
  const rawBuildArgs = [
    "build",
    "--tag",
    config.image.ref,
    "--build-arg",
    `BASE_IMAGE=${config.image.base}`,
    "--build-arg",
    `CLAUDE_CODE_VERSION=${config.claudeCode.version}`,
    "--label",
    "dev.claude-bottle.image=bundled",
    "--label",
    `dev.claude-bottle.claude-code-version=${config.claudeCode.version}`,
    context,
  ];

  log(`setup: building ${config.image.ref} once (cached after the first time)`);
  await cli(["prepare", "--backend", "docker", "-q"]);
  // One bottle run makes the project's home folder, which the raw baseline mounts too.
  await cli(["shell", "--backend", "docker", "-q", "--", "true"]);

  return {
    root,
    workspace,
    env,
    config,
    imageRef: config.image.ref,
    rawBuildArgs,
    cli,
    cliBin,
    suffix,
    async cleanup() {
      // The project's warm gateway (claude-bottle keeps one per project between runs) goes with it.
      const listed = JSON.parse(await cli(["ps", "--json"]).catch(() => "[]"));
      for (const entry of listed.filter((bottle) => bottle.kept && bottle.workspace === workspace))
        await cli(["stop", entry.name]).catch(() => undefined);
      await rm(root, { recursive: true, force: true });
    },
  };
}
