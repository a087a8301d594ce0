/**
 * The smolmachines prepare pipeline: build the agent image with Docker, then convert it into a
 * packed smolvm artifact, cached by image digest.
 *
 *   build (always, reporting the image id) → cache hit? note the use, return the sidecar
 *                              → miss: sweep orphaned registries → lock the digest
 *                                      → hit now? (another process packed it)
 *                                      → push (the ephemeral registry starts meanwhile) → pack
 *                                      → add to the cache
 *
 * Several processes missing the same digest at once pack it once: the first takes the digest's
 * lock, the others wait for it and find the entry when they get it. See smolmachine-cache.ts for
 * why an interrupted pack never leaves a hit behind.
 */
import { join } from "node:path";
import { type EphemeralRegistry, localRegistryRef } from "@claude-bottle/container-engine";
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
import type { SmolvmCli } from "./smolvm-cli.js";

export interface EnsureSmolmachineDeps {
  /** `<cache root>/smolmachines` */
  cacheDir: string;
  /**
   * Builds the agent image as `imageRef` (every time: a cached build is cheap, and edits land);
   * resolves with the image's id, the cache key.
   */
  buildImage(imageRef: string): Promise<string>;
  /**
   * Streams the built image (`source`, its id) into the local registry as `target`
   * (`localhost:PORT/name:tag`), which is known once the registry is up; the push may start
   * before that (core's `pushUncompressed` does).
   */
  push(source: string, target: Promise<string>): Promise<void>;
  /** Starts a throwaway registry on 127.0.0.1; released when the pipeline is done with it. */
  openRegistry(): Promise<EphemeralRegistry>;
  /**
   * Removes the registries of earlier prepares that were killed (container-engine's
   * `sweepOrphanedRegistries`); called on a miss only, before this one starts its own and after it.
   */
  sweepRegistries?(): Promise<unknown>;
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

  await deps.sweepRegistries?.();
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
    // Once more after the miss: a registry whose claude-bottle was killed while its `docker run`
    // was on the way appears only after that CLI has gone, maybe after the sweep above.
    await deps.sweepRegistries?.()?.catch(() => undefined);
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
  // The registry starts while the push begins: `docker save` sends nothing until the engine has
  // gathered every layer (Docker 20.10 on the 2-core machine: the first byte of the 860 MB agent
  // image after about 5 s of a 7 s save), so the registry's start (0.25 to 0.5 s) is hidden. The
  // image is saved by its id, so it needs no tag for the registry in the engine.
  const opening = deps.openRegistry();
  const target = opening.then((registry) =>
    localRegistryRef(registry.port, repositoryName(imageRef), digest),
  );
  // Handled by the push or below; this only keeps an early failure from going unobserved.
  target.catch(() => {});
  try {
    await progress.step("push to local registry", () => deps.push(image.imageId, target));
    const localRef = await target;
    const packed = await progress.step("pack with smolvm", () =>
      deps.smolvm.packCreate(localRef, join(deps.cacheDir, stubFileName(digest))),
    );
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
  } finally {
    const registry = await opening.catch(() => undefined);
    await registry?.[Symbol.asyncDispose]();
  }
}
