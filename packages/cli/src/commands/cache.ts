import { BottleError, type CacheEntry, type PruneCacheResult } from "@claude-bottle/core";
import ms from "ms";
import { type Io, printJson, table } from "../io.js";
import { backendsThat, settingsFor } from "./shared.js";

const size = (bytes: number) =>
  bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(1)} GiB` : `${(bytes / 1024 ** 2).toFixed(1)} MiB`;

/** Every backend that keeps a cache (`listCache`/`pruneCache`), built-in or configured. */
async function cachingBackends(io: Io) {
  const settings = await settingsFor(io, {}, { untrusted: "skip" });
  const backends = await backendsThat(settings, (backend) =>
    Boolean(backend.listCache && backend.pruneCache),
  );
  return { settings, backends };
}

/** `claude-bottle cache ls`: what each backend keeps in the cache, most recently used first. */
export async function cacheListCommand(io: Io, options: { json?: boolean }): Promise<number> {
  const { settings, backends } = await cachingBackends(io);
  const entries: (CacheEntry & { backend: string })[] = [];
  for (const backend of backends) {
    for (const entry of await backend.listCache!()) entries.push({ backend: backend.name, ...entry });
  }
  if (options.json) printJson(io, entries);
  else if (entries.length === 0) io.stderr.write(`the cache is empty (${settings.config.cacheDir})\n`);
  else {
    const rows = entries.map((e) => [
      e.backend,
      e.id,
      e.imageRef ?? "(unknown)",
      size(e.sizeBytes),
      e.createdAt,
      e.lastUsedAt,
    ]);
    io.stdout.write(`${table([["BACKEND", "ID", "IMAGE", "SIZE", "CREATED", "LAST USED"], ...rows])}\n`);
  }
  return 0;
}

/**
 * `claude-bottle cache prune`: leftovers of interrupted work always; entries with --all or
 * --older-than; in every backend that keeps a cache.
 */
export async function cachePruneCommand(
  io: Io,
  options: { all?: boolean; olderThan?: string; json?: boolean },
): Promise<number> {
  if (options.all && options.olderThan) {
    throw new BottleError("USAGE", "cache prune takes --all or --older-than, not both");
  }
  let olderThanMs: number | undefined;
  if (options.olderThan !== undefined) {
    olderThanMs = ms(options.olderThan as ms.StringValue);
    if (typeof olderThanMs !== "number" || Number.isNaN(olderThanMs) || olderThanMs < 0) {
      throw new BottleError("USAGE", `--older-than: "${options.olderThan}" is not a duration`, {
        hint: "use a number with a unit, e.g. 30m, 12h, 7d",
      });
    }
  }
  const { backends } = await cachingBackends(io);
  const total: Omit<PruneCacheResult, "removed"> & { removed: (CacheEntry & { backend: string })[] } = {
    removed: [],
    busy: [],
    leftovers: [],
    freedBytes: 0,
  };
  for (const backend of backends) {
    const result = await backend.pruneCache!({
      ...(options.all && { all: true }),
      ...(olderThanMs !== undefined && { olderThanMs }),
    });
    total.removed.push(...result.removed.map((entry) => ({ backend: backend.name, ...entry })));
    total.busy.push(...result.busy);
    total.leftovers.push(...result.leftovers);
    total.freedBytes += result.freedBytes;
  }
  if (options.json) printJson(io, total);
  else {
    for (const entry of total.removed)
      io.stdout.write(`removed ${entry.backend} ${entry.id}${entry.imageRef ? ` ${entry.imageRef}` : ""}\n`);
    for (const line of total.leftovers) io.stdout.write(`removed ${line}\n`);
    for (const id of total.busy) io.stderr.write(`kept ${id}: it is in use right now\n`);
    io.stdout.write(`freed ${size(total.freedBytes)}\n`);
  }
  return 0;
}
