import { ImageEngine } from "@claude-bottle/container-engine";
import { BottleError } from "@claude-bottle/core";
import ms from "ms";
import { type Io, printJson, table } from "../io.js";
import { settingsFor } from "./shared.js";

const size = (bytes: number) =>
  bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(1)} GiB` : `${(bytes / 1024 ** 2).toFixed(1)} MiB`;

/** `claude-bottle cache ls`: the packed smolmachines images, most recently used first. */
export async function cacheListCommand(io: Io, options: { json?: boolean }): Promise<number> {
  const { listSmolmachineCache } = await import("@claude-bottle/backend-smolmachines");
  const settings = await settingsFor(io, {}, { untrusted: "skip" });
  const entries = await listSmolmachineCache(settings.config.cacheDir);
  if (options.json) printJson(io, entries);
  else if (entries.length === 0) io.stderr.write(`the cache is empty (${settings.config.cacheDir})\n`);
  else {
    const rows = entries.map((e) => [
      e.digest,
      e.imageRef ?? "(unknown)",
      size(e.sizeBytes),
      e.createdAt,
      e.lastUsedAt,
    ]);
    io.stdout.write(`${table([["DIGEST", "IMAGE", "SIZE", "CREATED", "LAST USED"], ...rows])}\n`);
  }
  return 0;
}

/**
 * `claude-bottle cache prune`: leftovers of interrupted packs and the registries of killed prepares
 * always; entries with --all or --older-than.
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
  const { pruneSmolmachineCache } = await import("@claude-bottle/backend-smolmachines");
  const settings = await settingsFor(io, {}, { untrusted: "skip" });
  const result = await pruneSmolmachineCache(settings.config.cacheDir, {
    ...(options.all && { all: true }),
    ...(olderThanMs !== undefined && { olderThanMs }),
    engine: new ImageEngine(),
  });
  if (options.json) printJson(io, result);
  else {
    for (const entry of result.removed)
      io.stdout.write(`removed ${entry.digest} ${entry.imageRef ?? ""}\n`.replace(" \n", "\n"));
    if (result.leftovers.length > 0)
      io.stdout.write(`removed ${result.leftovers.length} leftovers of interrupted packs\n`);
    for (const name of result.registries)
      io.stdout.write(`removed registry ${name} (its claude-bottle was killed)\n`);
    for (const digest of result.busy) io.stderr.write(`kept ${digest}: it is being packed right now\n`);
    io.stdout.write(`freed ${size(result.freedBytes)}\n`);
  }
  return 0;
}
