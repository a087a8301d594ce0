// The smolmachines cache under faults, against the real engine and the in-process registry, with the
// smolvm TEST DOUBLE packing (it really pulls from the registry; SMOLVM_DOUBLE_PACK_DELAY_MS makes it
// slow, SMOLVM_DOUBLE_PACK_FAIL makes it fail). Every failure must leave no export container, no
// temporary file or exported image, and no lock behind, and never a sidecar that counts as a hit.
import { chmod, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  buildAgentImage,
  exportImage,
  ImageEngine,
  startEphemeralRegistry,
} from "@claude-bottle/container-engine";
import {
  containersCreatedSince,
  existingContainers,
  integrationEnvironment,
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
  // The double's layer store, in this run's folder rather than the shared default.
  process.env.SMOLVM_DOUBLE_STATE = join(root, "smolvm-state");
  await buildAgentImage(env.engine, imageRef, tiny);
  digest = imageDigest(await env.engine.imageId(imageRef));
});
afterAll(async () => {
  await execa("docker", ["image", "rm", "--force", imageRef, ...cleanup], { reject: false });
});

function backend(cacheRoot: string, overrides: { engine?: ImageEngine } = {}) {
  return smolmachines({
    image: tiny,
    cacheDir: cacheRoot,
    dataDir: cacheRoot,
    engine: overrides.engine ?? env.engine,
  });
}

const job = (cacheRoot: string): ChildJob => ({
  cacheRoot,
  image: tiny,
  imageRef,
});
const packs = async () => (await smolvmCalls(log)).filter((argv) => argv[0] === "pack").length;
const files = async (cacheRoot: string) =>
  (await readdir(smolmachinesCacheDir(cacheRoot)).catch(() => [])).sort();

/** The real docker CLI's path, for wrappers that must not find themselves on PATH. */
async function realDocker(): Promise<string> {
  return (await execa("sh", ["-c", "command -v docker"])).stdout.trim();
}

/** Export containers made since `since` that are still there. */
const exportContainersLeft = async (since: string) =>
  existingContainers(await containersCreatedSince(since, "export"));

/** What a failed prepare must not leave: export containers, temporary files (the exported image among them), locks. */
async function expectNothingLeft(cacheRoot: string, since: string): Promise<void> {
  expect(await exportContainersLeft(since)).toEqual([]);
  expect(
    (await files(cacheRoot)).filter((name) => name.startsWith(".partial-") || name.endsWith(".lock")),
  ).toEqual([]);
  expect(await listSmolmachineCache(cacheRoot)).toEqual([]);
}

/** The one-layer pack the double made of the tiny image. */
async function expectPackedTiny(sidecar: string): Promise<void> {
  const payload = JSON.parse(await readFile(sidecar, "utf8"));
  expect(payload.layers).toHaveLength(1);
  expect(payload.image).toMatch(new RegExp(`^localhost:\\d+/${repository}:${digest}$`));
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
    // The killed one's exported image went with the next miss's clean-up; its registry died with it.
    expect(await exportContainersLeft(since)).toEqual([]);
    await expectPackedTiny(prepared.sidecar);
    expect(await files(cacheRoot)).toEqual([
      `${digest}.json`,
      `${digest}.smolmachine`,
      `${digest}.smolmachine.smolmachine`,
    ]);
    expect((await packs()) - packsBefore).toBe(2);
  });

  // kill -9 at each step of a miss: what it leaves (an exported image, a stub, metadata, a lock)
  // must never be a hit, and the next prepare must clean up, pack, and leave one entry. A kill in the
  // middle of the export (its container still there) is below.
  it.each([
    ["after", "build agent image"],
    ["after", "export image"], // the exported image in the cache folder, no registry yet
    ["after", "push to local registry"], // the in-process registry serving it
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
      await expectPackedTiny(prepared.sidecar);
      expect(await files(cacheRoot)).toEqual([
        `${digest}.json`,
        `${digest}.smolmachine`,
        `${digest}.smolmachine.smolmachine`,
      ]);
      expect(await exportContainersLeft(since)).toEqual([]);
    },
  );

  it("killed with SIGKILL in the middle of the export: the next prepare removes its container and its half layer, and packs", async () => {
    const cacheRoot = await tempDir("kill-export");
    const since = new Date().toISOString();
    // The real CLI, except that `export` stalls after its first 64 KiB, so the kill lands mid-export.
    const bin = await tempDir("stalling-docker");
    await writeFile(
      join(bin, "docker"),
      `#!/bin/sh\nif [ "$1" = export ]; then ${await realDocker()} "$@" | head -c 65536; exec sleep 60; fi\nexec ${await realDocker()} "$@"\n`,
    );
    await chmod(join(bin, "docker"), 0o755);
    const child = await startChild(job(cacheRoot), { env: { PATH: `${bin}:${process.env.PATH}` } });
    await child.step("export image");
    let orphan: string | undefined;
    for (let i = 0; i < 100 && !orphan; i++) {
      [orphan] = await exportContainersLeft(since);
      if (!orphan) await sleep(100);
    }
    // Wait for the half layer on disk, then kill everything.
    const exported = async () =>
      (await readdir(smolmachinesCacheDir(cacheRoot)).catch(() => [])).find((n) => n.endsWith(".export"));
    for (let i = 0; i < 100; i++) {
      const dir = await exported();
      if (dir && (await readdir(join(smolmachinesCacheDir(cacheRoot), dir))).length > 0) break;
      await sleep(100);
    }
    child.kill("SIGKILL");
    await child.exit;
    expect(orphan).toBeDefined();
    expect(await exportContainersLeft(since)).toEqual([orphan]);
    expect(await exported()).toBeDefined();

    const prepared = await backend(cacheRoot).prepare(imageRef);
    await expectPackedTiny(prepared.sidecar);
    // The killed prepare's container (its owner is dead) and its folder are gone.
    expect(await exportContainersLeft(since)).toEqual([]);
    expect(await files(cacheRoot)).toEqual([
      `${digest}.json`,
      `${digest}.smolmachine`,
      `${digest}.smolmachine.smolmachine`,
    ]);
  });

  it("killed with SIGKILL once the entry is in the cache: a hit from then on, and nothing of the pack left", async () => {
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
    // The registry was closed and the exported image removed before the entry was published.
    expect(await exportContainersLeft(since)).toEqual([]);
    expect((await files(cacheRoot)).filter((name) => name.startsWith(".partial-"))).toEqual([]);
  });

  it("a session cancelled during the export cleans up everything and caches nothing", async () => {
    const cacheRoot = await tempDir("export-cancel");
    const since = new Date().toISOString();
    const child = await startChild(job(cacheRoot));
    await child.step("export image");
    child.kill("SIGINT");
    const { result } = await child.exit;
    expect(result?.error?.code).toBe("ABORTED");
    await expectNothingLeft(cacheRoot, since);
  });

  it("four sessions missing the same image at once pack it once, with one export, and all succeed", async () => {
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
    const exports = await containersCreatedSince(since, "export");
    expect(exports).toHaveLength(1);
    expect(await existingContainers(exports)).toEqual([]);
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
    expect(await exportContainersLeft(since)).toEqual([]);
    // Killed mid-pack: its half-written stub is there, but no exported image (its name went once the
    // registry had it open, and the registry died with the process).
    const left = await files(cacheRoot);
    expect(left.some((name) => name.startsWith(`.partial-${otherDigest}-`))).toBe(true);
    expect(left.filter((name) => name.endsWith(".export"))).toEqual([]);

    // While the dead holder's lock still looks fresh, prune leaves that digest alone.
    const first = await pruneSmolmachineCache(cacheRoot, { engine: env.engine });
    expect(first.busy).toEqual([otherDigest]);
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
  it("export failure (the engine breaks mid-export)", async () => {
    const cacheRoot = await tempDir("export-fails");
    const since = new Date().toISOString();
    // The real CLI, except that `export` breaks after 64 KiB, as an engine that went away would.
    const cli = join(await tempDir("broken-docker"), "docker");
    await writeFile(
      cli,
      `#!/bin/sh\nif [ "$1" = export ]; then docker "$@" | head -c 65536; echo "unexpected EOF" >&2; exit 1; fi\nexec docker "$@"\n`,
    );
    await chmod(cli, 0o755);
    const error = await backend(cacheRoot, { engine: new ImageEngine({ binary: cli }) })
      .prepare(imageRef)
      .catch((e) => e);
    expect(error).toMatchObject({
      code: "PREPARE_FAILED",
      message: expect.stringMatching(/exporting sha256:[0-9a-f]{64}.*unexpected EOF/s),
    });
    expect(await containersCreatedSince(since, "export")).toHaveLength(1);
    await expectNothingLeft(cacheRoot, since);
  });

  it("pull failure (the registry went away before smolvm pulled)", async () => {
    const cacheRoot = await tempDir("pull-fails");
    const since = new Date().toISOString();
    const error = await ensureSmolmachine(imageRef, {
      cacheDir: smolmachinesCacheDir(cacheRoot),
      exportImage: (source, dir) => exportImage(env.engine, source, dir),
      smolvm: new SmolvmCli(),
      buildImage: (ref) => buildAgentImage(env.engine, ref, tiny),
      // A registry that is gone by the time smolvm pulls: it closes as soon as the image is pushed.
      openRegistry: async () => {
        const registry = await startEphemeralRegistry();
        return {
          port: registry.port,
          push: async (name, tag, image) => {
            const ref = await registry.push(name, tag, image);
            await registry.close();
            return ref;
          },
          close: registry.close,
          [Symbol.asyncDispose]: registry.close,
        };
      },
    }).catch((e) => e);
    expect(error).toMatchObject({
      code: "PACK_FAILED",
      message: expect.stringContaining("ECONNREFUSED"),
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
