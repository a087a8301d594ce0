/**
 * The relay's program as a file on the host, which each bottle mounts read-only at the gateway
 * package's `relayPath` (see bottleBootstrap there). It lives in the cache folder, named by the hash
 * of its contents: written once per claude-bottle version, never changed in place (a bottle that is
 * running keeps the file it mounted), and written again if the cache was cleared.
 *
 * A file the engine mounts from the host, like the workspace and the project's home beside it: it
 * reaches a bottle wherever those do.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomically } from "@claude-bottle/core/files";
import { relayProgram } from "@claude-bottle/gateway";

/** The relay's file under `cacheDir`, written there first if it is not there yet. */
export async function relayFileIn(cacheDir: string): Promise<string> {
  const program = relayProgram();
  const name = createHash("sha256").update(program).digest("hex").slice(0, 16);
  const dir = join(cacheDir, "relay");
  const path = join(dir, `${name}.mjs`);
  if (existsSync(path)) return path;
  await mkdir(dir, { recursive: true });
  // Whole or not at all: a run at the same moment may be mounting it already. Readable by the
  // bottle's user, whoever owns the cache.
  await writeFileAtomically(path, program, { mode: 0o644 });
  return path;
}
