/**
 * The smolmachines prepare pipeline: build the agent image with Docker, then convert it into a
 * packed smolvm artifact, cached by image digest.
 *
 *   build (always, reporting the image id) → cache hit? note the use, return the sidecar
 *       → miss: sweep orphaned containers (meanwhile) → lock the digest
 *              → hit now? (another process packed it)
 *              → export (one flattened layer, into a private folder of the cache)
 *              → in-process registry: tag + push (serve it as localhost:PORT/<name>:<digest>;
 *                the exported files' names go once the registry holds them open)
 *              → pack (smolvm pulls it from that registry) → close the registry → add to the cache
 *
 * Several processes missing the same digest at once pack it once: the first takes the digest's
 * lock, the others wait for it and find the entry when they get it. See smolmachine-cache.ts for
 * why an interrupted pack never leaves a hit behind; the exported files lie under the same
 * `.partial-<digest>-` prefix, so whatever a killed pack leaves is removed by the next miss of that
 * digest or by `cache prune`.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { EphemeralRegistry, ExportedImage } from "@claude-bottle/container-engine";
import { type ProgressReporter, silentProgress } from "@claude-bottle/core";
import {
  acquireCacheLock,
  ensureCacheDir,
  isCached,
  recordUse,
  removePartials,
  sidecarFileName,
  stubFileName,
  tryCacheLock,
  writeMetadata,
} from "./smolmachine-cache.js";
import { partialPrefix, type SmolvmCli } from "./smolvm-cli.js";

export interface EnsureSmolmachineDeps {
  /** `<cache root>/smolmachines` */
  cacheDir: string;
  /**
   * Builds the agent image as `imageRef` (every time: a cached build is cheap, and edits land);
   * resolves with the image's id, the cache key.
   */
  buildImage(imageRef: string): Promise<string>;
  /**
   * Exports the built image (`source`, its id) into `dir` as a one-layer OCI image
   * (container-engine's `exportImage`). `dir` is private to this pack and removed after it.
   */
  exportImage(source: string, dir: string): Promise<ExportedImage>;
  /** Starts the in-process registry on 127.0.0.1; closed when the pack is done with it. */
  openRegistry(): Promise<EphemeralRegistry>;
  /**
   * Removes the containers of earlier prepares that were killed mid-export (container-engine's
   * `sweepOrphanedContainers`); started on a miss only, beside this one's export. Its failure is
   * not the prepare's.
   */
  sweepContainers?(): Promise<unknown>;
  smolvm: Pick<SmolvmCli, "packCreate">;
  progress?: ProgressReporter;
  /** Stops waiting for another process's pack. */
  signal?: AbortSignal;
}

/** The cache key: the first 16 hex characters of the image id after `sha256:`. */
export function imageDigest(imageId: string): string {
  const hex = imageId.replace(/^sha256:/, "");
  if (!/^[0-9a-f]{16}/.test(hex)) throw new Error(`not an image id: ${imageId}`);
  return hex.slice(0, 16);
}

/** An image reference's repository, without registry host, tag or digest: `ghcr.io/acme/agent:1` → `acme/agent`. */
export function repositoryName(imageRef: string): string {
  let rest = imageRef.split("@", 1)[0]!;
  const parts = rest.split("/");
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    parts.shift();
  }
  rest = parts.join("/");
  const colon = rest.lastIndexOf(":");
  return colon > rest.lastIndexOf("/") ? rest.slice(0, colon) : rest;
}

/** Returns the path of the packed sidecar for `imageRef`'s current build. */
export async function ensureSmolmachine(imageRef: string, deps: EnsureSmolmachineDeps): Promise<string> {
  const progress = deps.progress ?? silentProgress;
  const imageId = await progress.step("build agent image", () => deps.buildImage(imageRef));
  const digest = imageDigest(imageId);
  const { cacheDir } = deps;
  const sidecar = join(cacheDir, sidecarFileName(digest));
  const image = { imageRef, imageId };
  if (await isCached(cacheDir, digest)) {
    await recordUse(cacheDir, digest, image);
    return sidecar;
  }

  // Housekeeping beside the miss rather than before it (each sweep is a `docker ps` or two, 0.1 to
  // 0.3 s on a busy 2-core machine): it removes only containers whose owner is dead, never this
  // one's. A container whose `docker create` was still on the way when its claude-bottle was killed
  // may appear after this sweep; the next miss or `cache prune` removes it.
  const sweeping = deps.sweepContainers?.().catch(() => undefined);
  try {
    return await packOnce(imageRef, digest, image, deps, progress);
  } finally {
    await sweeping;
  }
}

/** Under the digest's lock: pack, unless another process did while this one waited. */
async function packOnce(
  imageRef: string,
  digest: string,
  image: { imageRef: string; imageId: string },
  deps: EnsureSmolmachineDeps,
  progress: ProgressReporter,
): Promise<string> {
  const { cacheDir } = deps;
  const sidecar = join(cacheDir, sidecarFileName(digest));
  await ensureCacheDir(cacheDir);
  const release =
    (await tryCacheLock(cacheDir, digest)) ??
    (await progress.step("wait for another claude-bottle packing this image", () =>
      acquireCacheLock(cacheDir, digest, deps.signal ? { signal: deps.signal } : {}),
    ));
  try {
    // Another process may have packed it while this one waited.
    if (await isCached(cacheDir, digest)) {
      await recordUse(cacheDir, digest, image);
      return sidecar;
    }
    await removePartials(cacheDir, digest);
    await pack(imageRef, digest, image, deps, progress);
    return sidecar;
  } finally {
    await release();
  }
}

async function pack(
  imageRef: string,
  digest: string,
  image: { imageRef: string; imageId: string },
  deps: EnsureSmolmachineDeps,
  progress: ProgressReporter,
): Promise<void> {
  // Private (0700) and under the partial prefix: removed below on every way out, and by the next
  // miss of this digest (removePartials) or `cache prune` after a kill -9.
  const exportDir = join(deps.cacheDir, `${partialPrefix}${digest}-${randomBytes(4).toString("hex")}.export`);
  let registry: EphemeralRegistry | undefined;
  let packed: Awaited<ReturnType<EnsureSmolmachineDeps["smolvm"]["packCreate"]>>;
  try {
    await mkdir(exportDir, { mode: 0o700 });
    // Exported by its id, so nothing is tagged in the engine.
    const exported = await progress.step("export image", () => deps.exportImage(image.imageId, exportDir));
    registry = await deps.openRegistry();
    const opened = registry;
    // "tag" and "push" in one: the registry serves the exported image under this reference.
    const localRef = await progress.step("push to local registry", () =>
      opened.push(repositoryName(imageRef), digest, exported),
    );
    // The registry holds the layer open: its name can go now, which costs nothing (the space returns
    // when the registry closes), and a kill from here on leaves no exported file behind.
    await rm(exportDir, { recursive: true, force: true });
    packed = await progress.step("pack with smolvm", () =>
      deps.smolvm.packCreate(localRef, join(deps.cacheDir, stubFileName(digest))),
    );
  } finally {
    // Once smolvm has pulled, the registry is not needed: gone before the entry is published, as
    // are the exported files on every way out (removed above once served, or here after a failure).
    await registry?.close();
    await rm(exportDir, { recursive: true, force: true });
  }
  try {
    // Metadata between the stub's rename and the sidecar's: the entry is a hit when this ends.
    await progress.step("add to the cache", () =>
      packed.publish(async () => {
        const now = new Date().toISOString();
        await writeMetadata(deps.cacheDir, { digest, ...image, createdAt: now, lastUsedAt: now });
      }),
    );
  } finally {
    await packed.discard();
  }
}
