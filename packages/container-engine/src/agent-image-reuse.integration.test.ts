// Reusing the bundled agent image while nothing it is built from has changed, against the real
// engine: through buildAgentImage (a second prepare asks one question and builds nothing), and the
// decision itself on small images standing in for the agent image and its base, re-tagged as a
// user's `docker pull`, `docker tag` or `docker rmi` would.
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Options as ExecaOptions, execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { buildAgentImage } from "./agent-image.js";
import { type BundledBuildInputs, rememberBuild, reusableBuild } from "./agent-image-reuse.js";
import { ImageEngine } from "./image-engine.js";
import { integrationEnvironment } from "./testing/index.js";

const { engine, baseImage } = integrationEnvironment();
const imageRef = "claude-bottle-test-agent:latest";
const suffix = randomBytes(4).toString("hex");
const tags: string[] = [];
const dirs: string[] = [];

afterAll(async () => {
  for (const tag of tags) await engine.removeImage(tag).catch(() => undefined);
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function cacheDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cb-agent-reuse-"));
  dirs.push(dir);
  return dir;
}

async function tag(source: string, target: string): Promise<void> {
  await execa("docker", ["tag", source, target]);
  if (!tags.includes(target)) tags.push(target);
}

/** The real engine, with every CLI call it makes written down. */
class RecordingEngine extends ImageEngine {
  readonly calls: string[][] = [];
  override spawn(args: string[], options: ExecaOptions = {}) {
    this.calls.push(args);
    return super.spawn(args, options);
  }
  override async exec(...call: Parameters<ImageEngine["exec"]>) {
    this.calls.push(call[0]);
    return super.exec(...call);
  }
  override async build(options: Parameters<ImageEngine["build"]>[0]) {
    this.calls.push(["build", options.tag]);
    return super.build(options);
  }
}

describe("reusing the bundled agent image (real engine)", () => {
  it("builds once; the next prepare with the same inputs asks the engine once and builds nothing", async () => {
    const memory = { cacheDir: await cacheDir() };
    const source = {
      kind: "bundled" as const,
      base: baseImage,
      extraCaCerts: process.env.NODE_EXTRA_CA_CERTS,
    };
    const first = new RecordingEngine();
    const built = await buildAgentImage(first, imageRef, source, { memory });
    expect(first.calls.map((call) => call[0])).toContain("build");
    // Remembered in the background, once the build is done.
    const records = join(memory.cacheDir, "docker", "agent-builds");
    for (let tries = 0; (await readdir(records).catch(() => [])).length === 0 && tries < 100; tries++)
      await new Promise((resolve) => setTimeout(resolve, 50));

    const second = new RecordingEngine();
    expect(await buildAgentImage(second, imageRef, source, { memory })).toBe(built);
    expect(second.calls).toEqual([["image", "inspect", "--format", "{{.Id}}", imageRef, baseImage]]);
    // Without a memory (smolmachines' pipeline), every prepare builds.
    const third = new RecordingEngine();
    expect(await buildAgentImage(third, imageRef, source)).toBe(built);
    expect(third.calls.map((call) => call[0])).toContain("build");
  });

  describe("the decision, on stand-in images", () => {
    const standIn = `claude-bottle-test-reuse-image:${suffix}`;
    const standInBase = `claude-bottle-test-reuse-base:${suffix}`;
    const inputs: BundledBuildInputs = {
      tag: standIn,
      base: standInBase,
      dockerfile: "FROM scratch\n",
      caCerts: "",
      buildArgs: { BASE_IMAGE: standInBase },
      labels: { "dev.claude-bottle.image": "bundled" },
    };
    const idOf = async (ref: string) => (await engine.inspect(ref)).Id as string;
    // Two different images to play the parts: the base image and the test agent image.
    const imageA = baseImage;
    const imageB = imageRef;

    it("reuses what it remembered while the tag and the base are the same images", async () => {
      const memory = { cacheDir: await cacheDir() };
      await tag(imageB, standIn);
      await tag(imageA, standInBase);
      expect(await reusableBuild(engine, memory, inputs)).toBeUndefined();
      await rememberBuild(engine, memory, inputs, await idOf(standIn));
      expect(await reusableBuild(engine, memory, inputs)).toBe(await idOf(standIn));
      // Inputs that differ in anything are another build.
      expect(await reusableBuild(engine, memory, { ...inputs, caCerts: "another CA" })).toBeUndefined();
      expect(
        await reusableBuild(engine, memory, { ...inputs, dockerfile: "FROM scratch\nENV A=1\n" }),
      ).toBeUndefined();
    });

    it("builds again when the base was pulled anew, the tag moved or removed, or the engine is another", async () => {
      const memory = { cacheDir: await cacheDir() };
      await tag(imageB, standIn);
      await tag(imageA, standInBase);
      await rememberBuild(engine, memory, inputs, await idOf(standIn));
      expect(await reusableBuild(engine, memory, inputs)).toBe(await idOf(standIn));

      // `docker pull` of the base: its tag now names another image.
      await tag(imageB, standInBase);
      expect(await reusableBuild(engine, memory, inputs)).toBeUndefined();
      await tag(imageA, standInBase);
      expect(await reusableBuild(engine, memory, inputs)).toBe(await idOf(standIn));

      // The tag moved to another image, then removed.
      await tag(imageA, standIn);
      expect(await reusableBuild(engine, memory, inputs)).toBeUndefined();
      await engine.removeImage(standIn);
      expect(await reusableBuild(engine, memory, inputs)).toBeUndefined();

      // Another engine (another DOCKER_HOST) keeps records of its own.
      await tag(imageB, standIn);
      const elsewhere = new ImageEngine({ env: { ...process.env, DOCKER_HOST: "unix:///nonexistent.sock" } });
      expect(await reusableBuild(elsewhere, memory, inputs)).toBeUndefined();
      expect(await reusableBuild(engine, memory, inputs)).toBe(await idOf(standIn));
    });
  });
});
