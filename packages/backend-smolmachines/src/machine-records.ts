/**
 * Which smolvm machines claude-bottle created, for `ps`, `stop` and sweeping after a crash: one
 * JSON file per machine in `<data dir>/smolmachines/machines/<machine>.json`, written atomically
 * (temporary name, then rename) before the machine is created and removed once it is deleted.
 *
 * smolvm has `machine ls --json` (`LsCmd` in its src/cli/machine.rs has had `--json` since
 * v0.2.0), but that output's shape is not part of smolvm's documented CLI contract, and it knows
 * nothing of what claude-bottle needs: the workspace a machine was made for and the process that
 * owns it. One file per machine needs no lock: each
 * file has a single writer (its owner), and readers only ever see whole files.
 *
 * A machine whose owner is dead (core's `ownerIsDead`: pid gone, or another boot, on this host) is
 * swept: stopped, deleted, forgotten.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomically } from "@claude-bottle/core/files";
import { z } from "zod";

export const machineRecordSchema = z.object({
  /** The smolvm machine's name (the bottle's name plus a random suffix). */
  name: z.string().min(1),
  /** The bottle's name as the run gave it (RunSpec.name); absent in records of older versions. */
  bottle: z.string().optional(),
  /** The host workspace it mounts. */
  workspace: z.string(),
  /** When it was created (ISO 8601). */
  startedAt: z.string(),
  /** The claude-bottle process that created it and will delete it (core's ProcessOwner). */
  owner: z.object({ pid: z.number().int().positive(), bootId: z.string().optional(), host: z.string() }),
});
export type MachineRecord = z.infer<typeof machineRecordSchema>;

/** Where the records live, inside claude-bottle's data root. */
export const machineRecordsDir = (dataRoot: string) => join(dataRoot, "smolmachines", "machines");

const recordFile = (dir: string, name: string) => join(dir, `${name}.json`);

export async function writeMachineRecord(dir: string, record: MachineRecord): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFileAtomically(recordFile(dir, record.name), `${JSON.stringify(record, null, 2)}\n`, {
    temporary: join(dir, `.partial-${record.name}-${randomBytes(4).toString("hex")}`),
  });
}

export async function removeMachineRecord(dir: string, name: string): Promise<void> {
  await rm(recordFile(dir, name), { force: true });
}

/** Every readable record; files that do not parse (another version's, say) are left alone. */
export async function readMachineRecords(dir: string): Promise<MachineRecord[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const records: MachineRecord[] = [];
  for (const name of names) {
    if (!name.endsWith(".json") || name.startsWith(".")) continue;
    try {
      const parsed = machineRecordSchema.safeParse(JSON.parse(await readFile(join(dir, name), "utf8")));
      if (parsed.success) records.push(parsed.data);
    } catch {
      // Removed meanwhile, or not JSON: not ours to judge.
    }
  }
  return records.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
}
