// ensureSmolmachine against a real Docker engine and the in-process registry, with the smolvm TEST
// DOUBLE (test/fixtures/smolvm-double) on PATH: the double pulls the exported image over the
// registry's HTTP API and checks every digest, so a passing test proves build → export → push
// really happened.
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { containersCreatedSince, integrationEnvironment } from "@claude-bottle/container-engine/testing";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listSmolmachineCache, smolmachines } from "../src/index.js";

const fixtures = fileURLToPath(new URL("./fixtures/", import.meta.url));
const env = integrationEnvironment();
const imageRef = `claude-bottle-test-tiny:${randomBytes(3).toString("hex")}`;
let cacheRoot: string;
let log: string;

beforeAll(async () => {
  cacheRoot = await mkdtemp(join(tmpdir(), "cb-smol-it."));
  log = join(cacheRoot, "smolvm-calls.jsonl");
  process.env.PATH = `${join(fixtures, "smolvm-double")}:${process.env.PATH}`;
  process.env.SMOLVM_DOUBLE_LOG = log;
  // The double's layer store, removed with the rest.
  process.env.SMOLVM_DOUBLE_STATE = join(cacheRoot, "smolvm-state");
});
afterAll(async () => {
  await rm(cacheRoot, { recursive: true, force: true });
  await execa("docker", ["image", "rm", "--force", imageRef], { reject: false });
});

describe("smolmachines prepare (real engine, in-process registry, smolvm double)", () => {
  const backend = () =>
    smolmachines({
      image: {
        kind: "dockerfile",
        dockerfile: join(fixtures, "tiny-image", "Dockerfile"),
        context: join(fixtures, "tiny-image"),
      },
      cacheDir: cacheRoot,
      dataDir: cacheRoot,
      engine: env.engine,
    });

  it("packs on a miss from the exported image, then hits the cache without export or pack", async () => {
    const firstStart = new Date().toISOString();
    const first = await backend().prepare(imageRef);

    const imageId = await env.engine.imageId(imageRef);
    const digest = imageId.slice("sha256:".length, "sha256:".length + 16);
    const cacheDir = join(cacheRoot, "smolmachines");
    expect(first.sidecar).toBe(join(cacheDir, `${digest}.smolmachine.smolmachine`));
    // The cache layout: stub and sidecar side by side (newer smolvm refuses an --output ending in
    // .smolmachine, and the double does too), plus the entry's metadata; no temporary file, no lock.
    expect((await readdir(cacheDir)).sort()).toEqual([
      `${digest}.json`,
      `${digest}.smolmachine`,
      `${digest}.smolmachine.smolmachine`,
    ]);
    const [entry] = await listSmolmachineCache(cacheRoot);
    expect(entry).toMatchObject({ digest, imageRef, imageId, sidecar: first.sidecar });
    expect(entry!.sizeBytes).toBeGreaterThan(0);
    expect(entry!.lastUsedAt).toBe(entry!.createdAt);

    // The double pulled what was exported: one uncompressed layer and a config of its own (not the
    // engine's image, whose config names the engine's layers), from the in-process registry.
    const payload = JSON.parse(await readFile(first.sidecar, "utf8"));
    expect(payload.layers).toHaveLength(1);
    expect(payload.layerBytes).toBeGreaterThan(0);
    expect(payload.configDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(payload.configDigest).not.toBe(imageId);
    expect(payload.image).toMatch(new RegExp(`^localhost:\\d+/claude-bottle-test-tiny:${digest}$`));
    // Nothing was tagged in the engine for it.
    const { stdout: tags } = await execa("docker", ["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    expect(tags.split("\n")).not.toContain(payload.image);
    // One container was created to export the image, and it is gone now.
    const exports = await containersCreatedSince(firstStart, "export");
    expect(exports).toHaveLength(1);
    const { stdout: left } = await execa("docker", [
      "ps",
      "--all",
      "--quiet",
      "--filter",
      `name=^${exports[0]}$`,
    ]);
    expect(left).toBe("");

    const secondStart = new Date().toISOString();
    const second = await backend().prepare(imageRef);
    expect(second.sidecar).toBe(first.sidecar);
    // A hit exports nothing (and so serves nothing) and packs nothing.
    expect(await containersCreatedSince(secondStart, "export")).toEqual([]);
    const packs = (await readFile(log, "utf8")).split("\n").filter((line) => line.includes('"pack"'));
    expect(packs).toHaveLength(1);
    // The hit counts as a use.
    const [used] = await listSmolmachineCache(cacheRoot);
    expect(Date.parse(used!.lastUsedAt)).toBeGreaterThan(Date.parse(entry!.createdAt));
    expect(used!.createdAt).toBe(entry!.createdAt);
  });
});
