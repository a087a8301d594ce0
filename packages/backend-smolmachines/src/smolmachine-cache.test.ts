import { mkdir, mkdtemp, readdir, readFile, rename, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EphemeralRegistry, ExportedImage } from "@claude-bottle/container-engine";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type EnsureSmolmachineDeps, ensureSmolmachine } from "./ensure-smolmachine.js";
import {
  acquireCacheLock,
  listSmolmachineCache,
  lockStaleMs,
  pruneSmolmachineCache,
  readMetadata,
  smolmachinesCacheDir,
  tryCacheLock,
  writeMetadata,
} from "./smolmachine-cache.js";
import { type PackCreateOptions, type PackedArtifact, sidecarPath } from "./smolvm-cli.js";

let cacheRoot: string;
let cacheDir: string;
beforeEach(async () => {
  cacheRoot = await mkdtemp(join(tmpdir(), "cb-cache."));
  cacheDir = smolmachinesCacheDir(cacheRoot);
  await mkdir(cacheDir);
});
afterEach(async () => {
  await rm(cacheRoot, { recursive: true, force: true });
});

const digestA = "aaaaaaaaaaaaaaaa";
const digestB = "bbbbbbbbbbbbbbbb";

/** A complete entry as a pack leaves it. */
async function entry(digest: string, lastUsedAt: string, bytes = 100) {
  await writeFile(join(cacheDir, `${digest}.smolmachine`), "stub");
  await writeFile(join(cacheDir, `${digest}.smolmachine.smolmachine`), "x".repeat(bytes));
  await writeMetadata(cacheDir, {
    digest,
    imageRef: `agent:${digest.slice(0, 4)}`,
    imageId: `sha256:${digest}${"0".repeat(48)}`,
    createdAt: "2026-01-01T00:00:00.000Z",
    lastUsedAt,
  });
}

/** A pack that behaves like SmolvmCli.packCreate: temporary names, stub, hook, sidecar last. */
function packLikeSmolvm(onPack: () => void = () => {}) {
  return vi.fn(
    async (_ref: string, stub: string, _options: PackCreateOptions = {}): Promise<PackedArtifact> => {
      onPack();
      await new Promise((resolve) => setTimeout(resolve, 50));
      const partial = join(cacheDir, `.partial-${stub.slice(-28, -12)}-1234`);
      await writeFile(partial, "stub");
      await writeFile(sidecarPath(partial), "payload");
      const discard = async () => {
        await rm(partial, { force: true });
        await rm(sidecarPath(partial), { force: true });
      };
      return {
        discard,
        async publish(beforePublish) {
          await rename(partial, stub);
          await beforePublish?.();
          await rename(sidecarPath(partial), sidecarPath(stub));
        },
      };
    },
  );
}

function deps(digest: string, packCreate = packLikeSmolvm()) {
  const registry = {
    port: 5000,
    push: vi.fn(async (name: string, tag: string) => `localhost:5000/${name}:${tag}`),
    close: async () => {},
    [Symbol.asyncDispose]: async () => {},
  } satisfies EphemeralRegistry;
  return {
    cacheDir,
    registry,
    buildImage: vi.fn(async () => `sha256:${digest}${"0".repeat(48)}`),
    exportImage: vi.fn(async () => ({}) as ExportedImage),
    openRegistry: vi.fn(async () => registry),
    smolvm: { packCreate },
  } satisfies EnsureSmolmachineDeps & Record<string, unknown>;
}

describe("ensureSmolmachine and the cache", () => {
  it("writes metadata before the sidecar takes its name, and packs what was pushed", async () => {
    let metadataWhenSidecarAppeared: unknown = "not yet";
    const d = deps(digestA);
    const pack = d.smolvm.packCreate;
    pack.mockImplementationOnce(async (_ref, stub) => ({
      discard: async () => {},
      async publish(beforePublish) {
        await writeFile(stub, "stub");
        await beforePublish?.();
        metadataWhenSidecarAppeared = await readMetadata(cacheDir, digestA);
        await writeFile(sidecarPath(stub), "payload");
      },
    }));
    await ensureSmolmachine("agent:latest", d);
    expect(metadataWhenSidecarAppeared).toMatchObject({
      digest: digestA,
      imageRef: "agent:latest",
      imageId: `sha256:${digestA}${"0".repeat(48)}`,
    });
    expect(d.registry.push.mock.calls[0]!.slice(0, 2)).toEqual(["agent", digestA]);
    expect(pack.mock.calls[0]![0]).toBe(`localhost:5000/agent:${digestA}`);
  });

  it("updates last used on a hit and keeps created", async () => {
    await entry(digestA, "2026-01-02T00:00:00.000Z");
    const before = Date.now();
    await ensureSmolmachine("agent:latest", deps(digestA));
    const metadata = await readMetadata(cacheDir, digestA);
    expect(metadata?.createdAt).toBe("2026-01-01T00:00:00.000Z");
    expect(Date.parse(metadata!.lastUsedAt)).toBeGreaterThanOrEqual(before);
  });

  it("packs once when several callers miss the same digest at once; all get the sidecar", async () => {
    let packs = 0;
    const pack = packLikeSmolvm(() => packs++);
    const results = await Promise.all(
      [1, 2, 3, 4].map(() => ensureSmolmachine("agent:latest", deps(digestA, pack))),
    );
    expect(packs).toBe(1);
    expect(new Set(results)).toEqual(new Set([join(cacheDir, `${digestA}.smolmachine.smolmachine`)]));
    expect((await readdir(cacheDir)).sort()).toEqual(
      [`${digestA}.json`, `${digestA}.smolmachine`, `${digestA}.smolmachine.smolmachine`].sort(),
    );
  });

  it("removes leftovers of an earlier interrupted pack on the next miss, and releases the lock on failure", async () => {
    await writeFile(join(cacheDir, `.partial-${digestA}-dead0000`), "half a stub");
    await writeFile(join(cacheDir, `.partial-${digestA}-dead0000.smolmachine`), "half a payload");
    const d = deps(digestA);
    d.smolvm.packCreate.mockRejectedValueOnce(new Error("pack broke"));
    await expect(ensureSmolmachine("agent:latest", d)).rejects.toThrow("pack broke");
    expect(await readdir(cacheDir)).toEqual([]);
    // The lock was released: the next attempt does not wait.
    await ensureSmolmachine("agent:latest", deps(digestA));
    expect(await listSmolmachineCache(cacheRoot)).toHaveLength(1);
  });

  it("stops waiting for another process's pack when the signal aborts", async () => {
    const release = await tryCacheLock(cacheDir, digestA);
    const abort = new AbortController();
    const waiting = ensureSmolmachine("agent:latest", { ...deps(digestA), signal: abort.signal });
    setTimeout(() => abort.abort(), 300);
    await expect(waiting).rejects.toMatchObject({ code: "ABORTED" });
    await release!();
  });
});

describe("cache locks", () => {
  it("lets one holder in at a time and takes over a lock whose holder died", async () => {
    const first = await tryCacheLock(cacheDir, digestA);
    expect(first).toBeDefined();
    expect(await tryCacheLock(cacheDir, digestA)).toBeUndefined();
    await first!();
    const second = await tryCacheLock(cacheDir, digestA);
    expect(second).toBeDefined();
    await second!();

    // A holder killed with SIGKILL leaves its lock folder and stops refreshing it.
    await mkdir(join(cacheDir, `${digestA}.lock`));
    expect(await tryCacheLock(cacheDir, digestA)).toBeUndefined();
    const old = new Date(Date.now() - lockStaleMs - 1_000);
    await utimes(join(cacheDir, `${digestA}.lock`), old, old);
    const release = await acquireCacheLock(cacheDir, digestA);
    await release();
    expect(await readdir(cacheDir)).toEqual([]);
  });
});

describe("listSmolmachineCache", () => {
  it("lists complete entries, most recently used first, with image, size and dates; leftovers are not entries", async () => {
    await entry(digestA, "2026-03-01T00:00:00.000Z", 1000);
    await entry(digestB, "2026-04-01T00:00:00.000Z", 10);
    await writeFile(join(cacheDir, "cccccccccccccccc.smolmachine"), "stub without sidecar");
    await writeFile(join(cacheDir, ".partial-dddddddddddddddd-0000.smolmachine"), "half");

    const entries = await listSmolmachineCache(cacheRoot);
    expect(entries.map((e) => e.digest)).toEqual([digestB, digestA]);
    const metadataBytes = (await readFile(join(cacheDir, `${digestA}.json`))).length;
    expect(entries[1]).toEqual({
      digest: digestA,
      imageRef: "agent:aaaa",
      imageId: `sha256:${digestA}${"0".repeat(48)}`,
      sizeBytes: 1000 + 4 + metadataBytes,
      createdAt: "2026-01-01T00:00:00.000Z",
      lastUsedAt: "2026-03-01T00:00:00.000Z",
      sidecar: join(cacheDir, `${digestA}.smolmachine.smolmachine`),
    });
  });

  it("is empty when nothing was ever cached", async () => {
    expect(await listSmolmachineCache(join(cacheRoot, "nowhere"))).toEqual([]);
  });
});

describe("pruneSmolmachineCache", () => {
  async function leftovers() {
    await writeFile(join(cacheDir, `.partial-${digestB}-0000`), "stub of a killed pack");
    await writeFile(join(cacheDir, `.partial-${digestB}-0000.smolmachine`), "half a payload");
    await writeFile(join(cacheDir, `${digestB}.json`), "{}");
    await mkdir(join(cacheDir, `${digestB}.lock`));
    const old = new Date(Date.now() - lockStaleMs - 1_000);
    await utimes(join(cacheDir, `${digestB}.lock`), old, old);
  }

  it("by default removes only leftovers of interrupted packs, stale lock included", async () => {
    await entry(digestA, "2020-01-01T00:00:00.000Z");
    await leftovers();
    const result = await pruneSmolmachineCache(cacheRoot);
    expect(result.removed).toEqual([]);
    expect(result.leftovers.sort()).toEqual(
      [`${digestB}.json`, `.partial-${digestB}-0000`, `.partial-${digestB}-0000.smolmachine`].sort(),
    );
    expect(result.freedBytes).toBeGreaterThan(0);
    expect((await readdir(cacheDir)).sort()).toEqual(
      [`${digestA}.json`, `${digestA}.smolmachine`, `${digestA}.smolmachine.smolmachine`].sort(),
    );
  });

  it("with olderThanMs removes entries not used within that time", async () => {
    await entry(digestA, "2026-03-01T00:00:00.000Z");
    await entry(digestB, "2026-03-09T00:00:00.000Z");
    const result = await pruneSmolmachineCache(cacheRoot, {
      olderThanMs: 7 * 24 * 3600 * 1000,
      now: new Date("2026-03-10T00:00:00.000Z"),
    });
    expect(result.removed.map((e) => e.digest)).toEqual([digestA]);
    expect((await listSmolmachineCache(cacheRoot)).map((e) => e.digest)).toEqual([digestB]);
  });

  it("with all removes every entry and leaves an empty folder", async () => {
    await entry(digestA, "2026-03-01T00:00:00.000Z", 10);
    await entry(digestB, "2026-03-09T00:00:00.000Z", 20);
    const result = await pruneSmolmachineCache(cacheRoot, { all: true });
    expect(result.removed).toHaveLength(2);
    expect(result.freedBytes).toBe(result.removed.reduce((sum, e) => sum + e.sizeBytes, 0));
    expect(await readdir(cacheDir)).toEqual([]);
  });

  it("leaves alone a digest that a live process is packing", async () => {
    await entry(digestA, "2020-01-01T00:00:00.000Z");
    await writeFile(join(cacheDir, `.partial-${digestA}-0000.smolmachine`), "being written");
    const release = await tryCacheLock(cacheDir, digestA);
    const result = await pruneSmolmachineCache(cacheRoot, { all: true });
    await release!();
    expect(result).toMatchObject({ removed: [], leftovers: [], busy: [digestA] });
    expect(await readdir(cacheDir)).toContain(`.partial-${digestA}-0000.smolmachine`);
  });
});
