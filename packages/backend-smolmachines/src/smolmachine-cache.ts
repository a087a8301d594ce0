/**
 * The cache of packed images, one entry per agent-image digest, in `<cache root>/smolmachines/`:
 *
 *   <digest>.smolmachine               the stub smolvm writes (platform binary with the VM runtime)
 *   <digest>.smolmachine.smolmachine   the sidecar (rootfs and layers); its presence IS the cache hit
 *   <digest>.json                      metadata: image, created, last used (written before the sidecar)
 *   <digest>.lock/                     held by the one process packing this digest (proper-lockfile)
 *   .partial-<digest>-<random>…        temporary names: a pack in progress, or one that was killed
 *                                      (…`.export/` is the exported image a pack serves to smolvm)
 *
 * Crash safety comes from names: everything is written under a `.partial-` name and renamed into
 * place, the sidecar last, so a pack killed at any point (SIGKILL included) leaves at worst
 * `.partial-` files, a stub without sidecar, metadata without sidecar, or a stale lock. None of
 * those is a hit; the next miss of that digest and `prune` clean them up.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type ImageEngine, sweepOrphanedContainers } from "@claude-bottle/container-engine";
import { BottleError } from "@claude-bottle/core";
import { writeFileAtomically } from "@claude-bottle/core/files";
import { lock } from "proper-lockfile";
import { partialPrefix } from "./smolvm-cli.js";

/** The smolmachines folder inside claude-bottle's cache root. */
export const smolmachinesCacheDir = (cacheRoot: string) => join(cacheRoot, "smolmachines");

export const stubFileName = (digest: string) => `${digest}.smolmachine`;
export const sidecarFileName = (digest: string) => `${digest}.smolmachine.smolmachine`;
export const metadataFileName = (digest: string) => `${digest}.json`;
const lockFileName = (digest: string) => `${digest}.lock`;

/** What the cache records about an entry, in `<digest>.json`. */
export interface CacheMetadata {
  digest: string;
  /** The image reference it was packed from, e.g. `claude-bottle-agent:latest`. */
  imageRef: string;
  /** The full image id (`sha256:…`). */
  imageId: string;
  /** When it was packed (ISO 8601). */
  createdAt: string;
  /** When a run last used it (ISO 8601). */
  lastUsedAt: string;
}

/** One complete cache entry, as `claude-bottle cache ls` shows it. */
export interface SmolmachineCacheEntry {
  digest: string;
  /** Missing for entries packed before metadata was kept. */
  imageRef?: string;
  imageId?: string;
  /** Stub, sidecar and metadata together, in bytes. */
  sizeBytes: number;
  createdAt: string;
  lastUsedAt: string;
  /** The sidecar that `run` boots. */
  sidecar: string;
}

export interface PruneOptions {
  /** Remove every entry. */
  all?: boolean;
  /** Remove entries not used within this many milliseconds. */
  olderThanMs?: number;
  /** "Now" for `olderThanMs` (default: the clock). */
  now?: Date;
  /**
   * Also remove the containers of killed prepares (container-engine's `sweepOrphanedContainers`)
   * through this engine. An engine that does not answer is skipped: the cache is pruned anyway.
   */
  engine?: ImageEngine;
}

export interface PruneResult {
  /** Entries removed. */
  removed: SmolmachineCacheEntry[];
  /** Leftovers of interrupted packs removed (file names in the cache folder). */
  leftovers: string[];
  /** Bytes freed by both. */
  freedBytes: number;
  /** Digests left alone because a pack of them is running right now. */
  busy: string[];
  /** Containers of killed prepares that were removed (export containers; registries of older versions). */
  containers: string[];
}

/**
 * How old a lock may get before another process treats its holder as dead. The holder refreshes
 * it every `staleMs / 2`; a killed holder stops refreshing.
 */
export const lockStaleMs = 10_000;

const digestPattern = /^[0-9a-f]{16}$/;

export async function isCached(cacheDir: string, digest: string): Promise<boolean> {
  return (await size(join(cacheDir, sidecarFileName(digest)))) !== undefined;
}

/** Write `<digest>.json` atomically (temporary name, then rename). */
export async function writeMetadata(cacheDir: string, metadata: CacheMetadata): Promise<void> {
  // Staged under the partial prefix, so that removePartials finds it after a crash.
  await writeFileAtomically(
    join(cacheDir, metadataFileName(metadata.digest)),
    `${JSON.stringify(metadata, null, 2)}\n`,
    {
      temporary: join(cacheDir, `${partialPrefix}${metadata.digest}-${randomBytes(4).toString("hex")}.json`),
    },
  );
}

export async function readMetadata(cacheDir: string, digest: string): Promise<CacheMetadata | undefined> {
  try {
    const parsed = JSON.parse(await readFile(join(cacheDir, metadataFileName(digest)), "utf8"));
    return typeof parsed === "object" && parsed !== null && parsed.digest === digest ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** Note a cache hit: last used is now. Entries from before metadata get theirs here. */
export async function recordUse(
  cacheDir: string,
  digest: string,
  image: { imageRef: string; imageId: string },
  now = new Date(),
): Promise<void> {
  const existing = await readMetadata(cacheDir, digest);
  const createdAt =
    existing?.createdAt ?? (await stat(join(cacheDir, sidecarFileName(digest)))).mtime.toISOString();
  await writeMetadata(cacheDir, { ...image, digest, ...existing, createdAt, lastUsedAt: now.toISOString() });
}

/** Remove the temporary files of earlier, interrupted packs of `digest`. Call with the digest's lock held. */
export async function removePartials(cacheDir: string, digest: string): Promise<string[]> {
  const names = (await readdir(cacheDir)).filter((name) => name.startsWith(`${partialPrefix}${digest}-`));
  await Promise.all(names.map((name) => rm(join(cacheDir, name), { force: true, recursive: true })));
  return names;
}

/** Releases a cache lock; never throws. */
export type ReleaseLock = () => Promise<void>;

/**
 * Wait for the digest's lock as long as another live process holds it (a pack takes minutes),
 * taking over a lock whose holder died (no refresh for `lockStaleMs`). Rejects when `signal` aborts.
 */
export async function acquireCacheLock(
  cacheDir: string,
  digest: string,
  options: { signal?: AbortSignal } = {},
): Promise<ReleaseLock> {
  const { signal } = options;
  try {
    for (;;) {
      signal?.throwIfAborted();
      const release = await tryCacheLock(cacheDir, digest);
      if (release) return release;
      await sleep(250, undefined, signal ? { signal } : {});
    }
  } catch (error) {
    if (!signal?.aborted) throw error;
    throw new BottleError("ABORTED", "waiting for another claude-bottle to pack this image was cancelled", {
      backend: "smolmachines",
      cause: error,
    });
  }
}

/** Take the digest's lock if nobody alive holds it; undefined when somebody does. */
export async function tryCacheLock(cacheDir: string, digest: string): Promise<ReleaseLock | undefined> {
  try {
    const release = await lock(join(cacheDir, digest), {
      lockfilePath: join(cacheDir, lockFileName(digest)),
      realpath: false,
      stale: lockStaleMs,
      retries: 0,
      // A lock is "compromised" when its refresh failed or came too late (a suspended laptop). The
      // worst outcome is a second pack of the same digest: both write under their own temporary
      // names and publish by rename, so the cache stays whole. Not worth crashing the session.
      onCompromised: () => {},
    });
    return () => release().catch(() => {});
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ELOCKED") return undefined;
    throw new BottleError("PREPARE_FAILED", `cannot lock the smolmachines cache in ${cacheDir}`, {
      backend: "smolmachines",
      hint: "check that the cache folder is writable",
      cause: error,
    });
  }
}

interface DigestFiles {
  names: string[];
  hasSidecar: boolean;
}

async function scan(cacheDir: string): Promise<Map<string, DigestFiles>> {
  let names: string[];
  try {
    names = await readdir(cacheDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return new Map();
    throw error;
  }
  const byDigest = new Map<string, DigestFiles>();
  for (const name of names) {
    const partial = name.startsWith(partialPrefix);
    const start = partial ? partialPrefix.length : 0;
    const digest = name.slice(start, start + 16);
    if (!digestPattern.test(digest) || name[start + 16] !== (partial ? "-" : ".")) continue;
    const files = byDigest.get(digest) ?? { names: [], hasSidecar: false };
    files.names.push(name);
    if (name === sidecarFileName(digest)) files.hasSidecar = true;
    byDigest.set(digest, files);
  }
  return byDigest;
}

async function entry(cacheDir: string, digest: string): Promise<SmolmachineCacheEntry | undefined> {
  const sidecar = join(cacheDir, sidecarFileName(digest));
  let sidecarStat: Awaited<ReturnType<typeof stat>>;
  try {
    sidecarStat = await stat(sidecar);
  } catch {
    return undefined;
  }
  const metadata = await readMetadata(cacheDir, digest);
  const createdAt = metadata?.createdAt ?? sidecarStat.mtime.toISOString();
  const sizeBytes =
    sidecarStat.size +
    ((await size(join(cacheDir, stubFileName(digest)))) ?? 0) +
    ((await size(join(cacheDir, metadataFileName(digest)))) ?? 0);
  return {
    digest,
    ...(metadata && { imageRef: metadata.imageRef, imageId: metadata.imageId }),
    sizeBytes,
    createdAt,
    lastUsedAt: metadata?.lastUsedAt ?? createdAt,
    sidecar,
  };
}

/** The complete entries in the cache (`cacheRoot` is claude-bottle's cache root), most recently used first. */
export async function listSmolmachineCache(cacheRoot: string): Promise<SmolmachineCacheEntry[]> {
  const cacheDir = smolmachinesCacheDir(cacheRoot);
  const entries: SmolmachineCacheEntry[] = [];
  for (const [digest, files] of await scan(cacheDir)) {
    if (!files.hasSidecar) continue;
    const found = await entry(cacheDir, digest);
    if (found) entries.push(found);
  }
  return entries.sort((a, b) => b.lastUsedAt.localeCompare(a.lastUsedAt));
}

/**
 * Remove leftovers of interrupted packs (always) and entries: every one with `all`, those not used
 * within `olderThanMs` with that. A digest that a live process is packing is left alone.
 */
export async function pruneSmolmachineCache(
  cacheRoot: string,
  options: PruneOptions = {},
): Promise<PruneResult> {
  const cacheDir = smolmachinesCacheDir(cacheRoot);
  const cutoff =
    options.olderThanMs === undefined
      ? undefined
      : (options.now ?? new Date()).getTime() - options.olderThanMs;
  const result: PruneResult = { removed: [], leftovers: [], freedBytes: 0, busy: [], containers: [] };
  if (options.engine) {
    result.containers = await sweepOrphanedContainers(options.engine).catch((error) => {
      if (BottleError.is(error) && error.code === "ENGINE_UNREACHABLE") return [];
      throw error;
    });
  }

  for (const [digest, files] of await scan(cacheDir)) {
    const current = files.hasSidecar ? await entry(cacheDir, digest) : undefined;
    const removeEntry =
      current !== undefined &&
      (options.all === true || (cutoff !== undefined && Date.parse(current.lastUsedAt) < cutoff));
    const entryFiles = new Set([sidecarFileName(digest), stubFileName(digest), metadataFileName(digest)]);
    const leftovers = files.names.filter(
      (name) => name !== lockFileName(digest) && (!current || !entryFiles.has(name)),
    );
    const staleLock = files.names.includes(lockFileName(digest));
    if (!removeEntry && leftovers.length === 0 && !staleLock) continue;

    const release = await tryCacheLock(cacheDir, digest);
    if (!release) {
      result.busy.push(digest);
      continue;
    }
    try {
      if (removeEntry && current) {
        // Sidecar first: from that moment on the entry is no longer a hit.
        for (const name of [sidecarFileName(digest), stubFileName(digest), metadataFileName(digest)])
          await rm(join(cacheDir, name), { force: true });
        result.removed.push(current);
        result.freedBytes += current.sizeBytes;
      }
      for (const name of leftovers) {
        const path = join(cacheDir, name);
        result.freedBytes += (await size(path)) ?? 0;
        await rm(path, { force: true, recursive: true });
        result.leftovers.push(name);
      }
    } finally {
      await release();
    }
  }
  return result;
}

/** Make sure the cache folder exists. */
export async function ensureCacheDir(cacheDir: string): Promise<void> {
  await mkdir(cacheDir, { recursive: true });
}

async function size(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}
