// The smolmachines cache under faults, against the real engine and a real registry, with the smolvm
// TEST DOUBLE packing (it really pulls from the registry; SMOLVM_DOUBLE_PACK_DELAY_MS makes it slow,
// SMOLVM_DOUBLE_PACK_FAIL makes it fail). Every failure must leave no registry container, no
// temporary file, no lock and no local-registry tag behind, and never a sidecar that counts as a hit.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  buildAgentImage,
  ImageEngine,
  pushUncompressed,
  startEphemeralRegistry,
} from "@claude-bottle/container-engine";
import {
  existingContainers,
  integrationEnvironment,
  registriesCreatedSince,
} from "@claude-bottle/container-engine/testing";
import type { AgentImageSource } from "@claude-bottle/core";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ensureSmolmachine,
  imageDigest,
  listSmolmachineCache,
  pruneSmolmachineCache,
  SmolvmCli,
  smolmachines,
  smolmachinesCacheDir,
} from "../src/index.js";
import {
  type ChildJob,
  fixtures,
  localRegistryTags,
  smolvmCalls,
  startChild,
  suffix,
  tempDir,
  useSmolvmDouble,
} from "./support.js";

const env = integrationEnvironment();
const repository = `claude-bottle-test-faults-${suffix()}`;
const imageRef = `${repository}:latest`;
const tiny: AgentImageSource = {
  kind: "dockerfile",
  dockerfile: join(fixtures, "tiny-image", "Dockerfile"),
  context: join(fixtures, "tiny-image"),
};
const cleanup: string[] = [];
let log: string;
let digest: string;

beforeAll(async () => {
  useSmolvmDouble();
  const root = await tempDir("faults");
  log = join(root, "smolvm-calls.jsonl");
  process.env.SMOLVM_DOUBLE_LOG = log;
  await buildAgentImage(env.engine, imageRef, tiny);
  digest = imageDigest(await env.engine.imageId(imageRef));
});
afterAll(async () => {
  await execa("docker", ["image", "rm", "--force", imageRef, ...cleanup], { reject: false });
});

function backend(cacheRoot: string, overrides: { registryImage?: string; engine?: ImageEngine } = {}) {
  return smolmachines({
    image: tiny,
    cacheDir: cacheRoot,
    dataDir: cacheRoot,
    registryImage: overrides.registryImage ?? env.registryImage,
    engine: overrides.engine ?? env.engine,
  });
}

const job = (cacheRoot: string): ChildJob => ({
  cacheRoot,
  registryImage: env.registryImage,
  image: tiny,
  imageRef,
});
const packs = async () => (await smolvmCalls(log)).filter((argv) => argv[0] === "pack").length;
const files = async (cacheRoot: string) =>
  (await readdir(smolmachinesCacheDir(cacheRoot)).catch(() => [])).sort();

/** What a failed prepare must not leave: registry containers, temporary files, locks, local-registry tags. */
async function expectNothingLeft(cacheRoot: string, since: string): Promise<void> {
  expect(await existingContainers(await registriesCreatedSince(since))).toEqual([]);
  expect(
    (await files(cacheRoot)).filter((name) => name.startsWith(".partial-") || name.endsWith(".lock")),
  ).toEqual([]);
  expect(await listSmolmachineCache(cacheRoot)).toEqual([]);
  expect(await localRegistryTags(repository)).toEqual([]);
}

describe("smolmachines cache under faults", () => {
  it("a pack killed with SIGKILL leaves no hit; the next session takes over the dead lock and packs", async () => {
    const cacheRoot = await tempDir("sigkill");
    const since = new Date().toISOString();
    const packsBefore = await packs();
    const child = await startChild(job(cacheRoot), { env: { SMOLVM_DOUBLE_PACK_DELAY_MS: "60000" } });
    await child.step("pack with smolvm");
    // Wait until the double has written half the payload under its temporary name, then kill everything.
    for (
      let i = 0;
      i < 100 &&
      !(await files(cacheRoot)).some((n) => n.endsWith(".smolmachine") && n.startsWith(".partial-"));
      i++
    )
      await sleep(100);
    child.kill("SIGKILL");
    expect((await child.exit).signal).toBe("SIGKILL");

    expect(await listSmolmachineCache(cacheRoot)).toEqual([]);
    const left = await files(cacheRoot);
    expect(left).not.toContain(`${digest}.smolmachine.smolmachine`);
    expect(left).toContain(`${digest}.lock`);
    expect(left.some((name) => name.startsWith(`.partial-${digest}-`))).toBe(true);
    const prepared = await backend(cacheRoot).prepare(imageRef);
    // The next prepare swept the killed one's registry; no local-registry tag is left (a push
    // saves the image by its id).
    expect(await existingContainers(await registriesCreatedSince(since))).toEqual([]);
    expect(await localRegistryTags(repository)).toEqual([]);
    expect(JSON.parse(await readFile(prepared.sidecar, "utf8"))).toMatchObject({
      configDigest: await env.engine.imageId(imageRef),
    });
    expect(await files(cacheRoot)).toEqual([
      `${digest}.json`,
      `${digest}.smolmachine`,
      `${digest}.smolmachine.smolmachine`,
    ]);
    expect((await packs()) - packsBefore).toBe(2);
  });

  // kill -9 at each step of a miss: what it leaves (a registry, a stub, metadata, a lock) must
  // never be a hit, and the next prepare must sweep the registry, pack, and leave one entry. The
  // registry starts within the push step (beside `docker save`); a kill during the push is below.
  it.each([
    ["after", "build agent image"],
    ["after", "push to local registry"],
    ["before", "add to the cache"], // smolvm done, nothing renamed yet
  ] as const)(
    'killed with SIGKILL %s step "%s": the next prepare succeeds, one entry, nothing running',
    async (when, step) => {
      const cacheRoot = await tempDir("kill-step");
      const since = new Date().toISOString();
      const child = await startChild({ ...job(cacheRoot), pause: { step, when } });
      await child.line(`[paused] ${when} ${step}`);
      child.kill("SIGKILL");
      expect((await child.exit).signal).toBe("SIGKILL");
      expect(await listSmolmachineCache(cacheRoot)).toEqual([]);

      const prepared = await backend(cacheRoot).prepare(imageRef);
      expect(JSON.parse(await readFile(prepared.sidecar, "utf8"))).toMatchObject({
        configDigest: await env.engine.imageId(imageRef),
      });
      expect(await files(cacheRoot)).toEqual([
        `${digest}.json`,
        `${digest}.smolmachine`,
        `${digest}.smolmachine.smolmachine`,
      ]);
      // The killed prepare's registry: the next prepare swept it; and no local-registry tag is left.
      expect(await existingContainers(await registriesCreatedSince(since))).toEqual([]);
      expect(await localRegistryTags(repository)).toEqual([]);
    },
  );

  it("killed with SIGKILL once the entry is in the cache: a hit from then on; the next miss or cache prune removes its registry", async () => {
    const cacheRoot = await tempDir("kill-published");
    const since = new Date().toISOString();
    const child = await startChild({ ...job(cacheRoot), pause: { step: "add to the cache", when: "after" } });
    await child.line("[paused] after add to the cache");
    child.kill("SIGKILL");
    await child.exit;
    // Renamed into place before the kill: complete, and a hit.
    expect((await listSmolmachineCache(cacheRoot)).map((entry) => entry.digest)).toEqual([digest]);
    const packsBefore = await packs();
    await backend(cacheRoot).prepare(imageRef);
    expect((await packs()) - packsBefore).toBe(0);
    // A hit touches no registry, so the killed one's is still there until prune (or a miss) sweeps it.
    const [orphan] = await existingContainers(await registriesCreatedSince(since));
    expect(orphan).toBeDefined();
    expect((await pruneSmolmachineCache(cacheRoot, { engine: env.engine })).registries).toContain(orphan);
    expect(await existingContainers(await registriesCreatedSince(since))).toEqual([]);
    expect(await localRegistryTags(repository)).toEqual([]);
  });

  it("a session cancelled during the push cleans up everything and caches nothing", async () => {
    const cacheRoot = await tempDir("push-kill");
    const since = new Date().toISOString();
    const child = await startChild(job(cacheRoot));
    await child.step("push to local registry");
    child.kill("SIGINT");
    const { result } = await child.exit;
    expect(result?.error?.code).toBe("ABORTED");
    await expectNothingLeft(cacheRoot, since);
  });

  it("four sessions missing the same image at once pack it once, with one registry, and all succeed", async () => {
    const cacheRoot = await tempDir("concurrent");
    const since = new Date().toISOString();
    const packsBefore = await packs();
    const children = await Promise.all(
      [1, 2, 3, 4].map(() => startChild(job(cacheRoot), { env: { SMOLVM_DOUBLE_PACK_DELAY_MS: "1500" } })),
    );
    const exits = await Promise.all(children.map((child) => child.exit));
    expect(exits.map((exit) => exit.code)).toEqual([0, 0, 0, 0]);
    const sidecars = new Set(exits.map((exit) => exit.result?.sidecar));
    expect(sidecars).toEqual(
      new Set([join(smolmachinesCacheDir(cacheRoot), `${digest}.smolmachine.smolmachine`)]),
    );
    expect((await packs()) - packsBefore).toBe(1);
    const registries = await registriesCreatedSince(since);
    expect(registries).toHaveLength(1);
    expect(await existingContainers(registries)).toEqual([]);
    expect(await files(cacheRoot)).toEqual([
      `${digest}.json`,
      `${digest}.smolmachine`,
      `${digest}.smolmachine.smolmachine`,
    ]);
  });

  it("prune removes what a killed pack left once its lock is stale, and keeps complete entries", async () => {
    const cacheRoot = await tempDir("prune");
    await backend(cacheRoot).prepare(imageRef);
    const since = new Date().toISOString();
    // Pack a second image and kill it mid-pack.
    const other = `${repository}:other`;
    cleanup.push(other);
    await execa("docker", [
      "build",
      "--quiet",
      "--label",
      `variant=${suffix()}`,
      "--tag",
      other,
      join(fixtures, "tiny-image"),
    ]);
    const otherDigest = imageDigest(await env.engine.imageId(other));
    const child = await startChild(
      { ...job(cacheRoot), imageRef: other, image: { kind: "existing" } },
      { env: { SMOLVM_DOUBLE_PACK_DELAY_MS: "60000" } },
    );
    await child.step("pack with smolvm");
    await sleep(500);
    child.kill("SIGKILL");
    await child.exit;
    const [killed] = await existingContainers(await registriesCreatedSince(since));
    expect(killed).toBeDefined();

    // While the dead holder's lock still looks fresh, prune leaves that digest alone; the dead
    // holder's registry it removes at once.
    const first = await pruneSmolmachineCache(cacheRoot, { engine: env.engine });
    expect(first.busy).toEqual([otherDigest]);
    expect(first.registries).toContain(killed);
    expect(await existingContainers(await registriesCreatedSince(since))).toEqual([]);
    expect(await localRegistryTags(repository)).toEqual([]);
    await sleep(10_500);
    const result = await pruneSmolmachineCache(cacheRoot);
    expect(result.removed).toEqual([]);
    expect(result.leftovers.length).toBeGreaterThan(0);
    expect(result.leftovers.every((name) => name.includes(otherDigest))).toBe(true);
    expect(await files(cacheRoot)).toEqual([
      `${digest}.json`,
      `${digest}.smolmachine`,
      `${digest}.smolmachine.smolmachine`,
    ]);
    expect((await listSmolmachineCache(cacheRoot)).map((entry) => entry.digest)).toEqual([digest]);
  });
});

describe("smolmachines prepare failures: a clear error, nothing left behind", () => {
  it("registry image missing", async () => {
    const cacheRoot = await tempDir("no-registry");
    const since = new Date().toISOString();
    const missing = `local/claude-bottle-missing-registry:${suffix()}`;
    const error = await backend(cacheRoot, { registryImage: missing })
      .prepare(imageRef)
      .catch((e) => e);
    expect(error).toMatchObject({
      code: "REGISTRY_FAILED",
      message: expect.stringContaining(`the registry image ${missing} is not available`),
      hint: expect.stringContaining("registry.image"),
    });
    await expectNothingLeft(cacheRoot, since);
  });

  it("registry never ready", async () => {
    const cacheRoot = await tempDir("never-ready");
    const since = new Date().toISOString();
    // A registry image whose container runs but never serves the API.
    const silent = `claude-bottle-test-silent-registry:${suffix()}`;
    cleanup.push(silent);
    await execa("docker", ["build", "--quiet", "--tag", silent, "-"], {
      input: `FROM ${env.registryImage}\nENTRYPOINT ["sleep"]\nCMD ["infinity"]\n`,
    });
    const error = await ensureSmolmachine(imageRef, {
      cacheDir: smolmachinesCacheDir(cacheRoot),
      push: (source, target) => pushUncompressed(env.engine, source, target),
      smolvm: new SmolvmCli(),
      buildImage: (ref) => buildAgentImage(env.engine, ref, tiny),
      openRegistry: () => startEphemeralRegistry(env.engine, { image: silent, readyTimeoutMs: 1_500 }),
    }).catch((e) => e);
    expect(error).toMatchObject({
      code: "REGISTRY_FAILED",
      message: expect.stringContaining("did not answer GET /v2/ within 2 s"),
    });
    await expectNothingLeft(cacheRoot, since);
  });

  it("push failure (the registry went away)", async () => {
    const cacheRoot = await tempDir("push-fails");
    const since = new Date().toISOString();
    const error = await ensureSmolmachine(imageRef, {
      cacheDir: smolmachinesCacheDir(cacheRoot),
      push: (source, target) => pushUncompressed(env.engine, source, target),
      smolvm: new SmolvmCli(),
      buildImage: (ref) => buildAgentImage(env.engine, ref, tiny),
      openRegistry: async () => {
        const registry = await startEphemeralRegistry(env.engine, { image: env.registryImage });
        await execa("docker", ["kill", registry.container]);
        return registry;
      },
    }).catch((e) => e);
    expect(error).toMatchObject({
      code: "REGISTRY_FAILED",
      message: expect.stringMatching(/^pushing localhost:\d+\//),
    });
    await expectNothingLeft(cacheRoot, since);
  });

  it("pack failure shows smolvm's error", async () => {
    const cacheRoot = await tempDir("pack-fails");
    const since = new Date().toISOString();
    process.env.SMOLVM_DOUBLE_PACK_FAIL = "writing the payload: No space left on device (os error 28)";
    let error: unknown;
    try {
      error = await backend(cacheRoot)
        .prepare(imageRef)
        .catch((e) => e);
    } finally {
      delete process.env.SMOLVM_DOUBLE_PACK_FAIL;
    }
    expect(error).toMatchObject({
      code: "PACK_FAILED",
      message: expect.stringContaining("Error: writing the payload: No space left on device (os error 28)"),
    });
    await expectNothingLeft(cacheRoot, since);
  });

  it("Docker engine unreachable", async () => {
    const cacheRoot = await tempDir("no-engine");
    const engine = new ImageEngine({
      env: { ...process.env, DOCKER_HOST: `unix://${cacheRoot}/no-docker.sock` },
    });
    const error = await backend(cacheRoot, { engine })
      .prepare(imageRef)
      .catch((e) => e);
    expect(error).toMatchObject({
      code: "ENGINE_UNREACHABLE",
      hint: expect.stringContaining("start Docker"),
    });
    expect(await files(cacheRoot)).toEqual([]);
  });
});
