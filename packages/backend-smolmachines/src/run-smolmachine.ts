/**
 * One bottled session on smolvm: create a machine from the packed sidecar under a unique name,
 * start it, run the command in it, and stop and delete it afterwards: on success, on errors and on
 * abort alike.
 *
 * `machine run --from` would be one call, but it refuses `--allow-host`/`--allow-cidr`, and the
 * packed stub's own `run` has no allow-lists and one daemon per artifact; `machine create --from`
 * with a unique name takes every flag and lets sessions run side by side.
 */
import { randomBytes } from "node:crypto";
import { mkdir, stat } from "node:fs/promises";
import {
  abortedError,
  BottleError,
  type BottleInfo,
  type RunResult,
  type RunSpec,
  withCleanUp,
} from "@claude-bottle/core";
import {
  currentOwner,
  type OwnerProbe,
  ownerIsDead,
  systemOwnerProbe,
} from "@claude-bottle/core/process-owner";
import { planMachine } from "./machine-plan.js";
import { readMachineRecords, removeMachineRecord, writeMachineRecord } from "./machine-records.js";
import type { MachineMount, SmolvmCli } from "./smolvm-cli.js";

export type MachineCli = Pick<
  SmolvmCli,
  "version" | "machineCreate" | "machineStart" | "machineExec" | "machineStop" | "machineDelete"
>;

export interface RunSmolmachineOptions {
  smolvm: MachineCli;
  /** Where the record of each machine this process creates is kept (machine-records.ts). */
  recordsDir: string;
  signal?: AbortSignal;
}

/** A machine name no other session uses: the bottle's name plus a random suffix. */
export function machineName(bottleName: string): string {
  return `${bottleName}-${randomBytes(4).toString("hex")}`;
}

export async function runSmolmachine(
  sidecar: string,
  spec: RunSpec,
  { smolvm, recordsDir, signal }: RunSmolmachineOptions,
): Promise<RunResult> {
  const plan = planMachine(spec, sidecar, { smolvmVersion: await smolvm.version() });
  await mkdir(spec.home, { recursive: true });
  await assertDirectories(plan.create.mounts);
  throwIfAborted(signal);
  await sweepOrphanedMachines(smolvm, recordsDir);

  const name = machineName(spec.name);
  // Recorded before it exists, so a claude-bottle killed during `create` still leaves a trace to sweep.
  await writeMachineRecord(recordsDir, {
    name,
    bottle: spec.name,
    workspace: spec.workspace,
    startedAt: new Date().toISOString(),
    owner: await currentOwner(),
  });
  const { result, cleanedUp: leftover } = await withCleanUp(
    async (): Promise<RunResult> => {
      try {
        await smolvm.machineCreate(name, plan.create, signal, plan.hostEnv);
        await smolvm.machineStart(name, signal, plan.hostEnv);
        const { exitCode } = await smolvm.machineExec(name, { ...plan.exec, hostEnv: plan.hostEnv }, signal);
        throwIfAborted(signal);
        return { exitCode, ...(plan.warnings.length > 0 && { warnings: plan.warnings }) };
      } catch (error) {
        throw signal?.aborted ? aborted(error) : error;
      }
    },
    // Also after a create that failed or was killed half-way: it may have registered the machine.
    async () => {
      const leftover = await removeMachine(smolvm, name);
      // A machine that could not be deleted keeps its record: the next sweep tries again.
      if (!leftover) await removeMachineRecord(recordsDir, name);
      return leftover;
    },
  );
  if (leftover) {
    throw new BottleError(
      "RUN_FAILED",
      `the session ended with exit code ${result.exitCode}, but machine ${name} could not be deleted: ${leftover.message}`,
      {
        backend: "smolmachines",
        hint: `delete it with: smolvm machine delete --name ${name} -f`,
        cause: leftover,
      },
    );
  }
  return result;
}

/** The machines this host's claude-bottle processes own now, for `claude-bottle ps`; sweeps the orphans first. */
export async function listMachines(smolvm: MachineCli, recordsDir: string): Promise<BottleInfo[]> {
  await sweepOrphanedMachines(smolvm, recordsDir);
  return (await readMachineRecords(recordsDir)).map((record) => ({
    name: record.name,
    ...(record.bottle && { bottle: record.bottle }),
    backend: "smolmachines",
    workspace: record.workspace,
    startedAt: record.startedAt,
    status: `running (claude-bottle pid ${record.owner.pid})`,
  }));
}

/**
 * Stop and delete one machine claude-bottle created, for `claude-bottle stop`. Its owner's `exec`
 * then ends, and the owner finds the machine gone.
 */
export async function stopMachine(smolvm: MachineCli, recordsDir: string, name: string): Promise<void> {
  const record = (await readMachineRecords(recordsDir)).find((candidate) => candidate.name === name);
  if (!record) {
    throw new BottleError("USAGE", `no smolmachines bottle is named ${name}`, {
      backend: "smolmachines",
      hint: "see `claude-bottle ps`",
    });
  }
  const failure = await removeMachine(smolvm, name);
  if (failure) {
    throw new BottleError("RUN_FAILED", `machine ${name} could not be deleted: ${failure.message}`, {
      backend: "smolmachines",
      hint: `delete it with: smolvm machine delete --name ${name} -f`,
      cause: failure,
    });
  }
  await removeMachineRecord(recordsDir, name);
}

/** Stop and delete the machines whose claude-bottle was killed, and forget them. */
export async function sweepOrphanedMachines(
  smolvm: Pick<MachineCli, "machineStop" | "machineDelete">,
  recordsDir: string,
  probe?: OwnerProbe,
): Promise<string[]> {
  const records = await readMachineRecords(recordsDir);
  if (records.length === 0) return [];
  const judge = probe ?? (await systemOwnerProbe());
  const swept: string[] = [];
  for (const record of records) {
    if (!ownerIsDead(record.owner, judge)) continue;
    if (await removeMachine(smolvm, record.name)) continue;
    await removeMachineRecord(recordsDir, record.name);
    swept.push(record.name);
  }
  return swept;
}

/** Stop, then force-delete. A stop that fails (never started, already stopped) is fine; the delete decides. */
async function removeMachine(
  smolvm: Pick<MachineCli, "machineStop" | "machineDelete">,
  name: string,
): Promise<Error | undefined> {
  await smolvm.machineStop(name).catch(() => {});
  try {
    await smolvm.machineDelete(name);
    return undefined;
  } catch (error) {
    if (BottleError.is(error) && /not found|no such machine|does not exist/i.test(error.message))
      return undefined;
    return error as Error;
  }
}

async function assertDirectories(mounts: MachineMount[]): Promise<void> {
  for (const mount of mounts) {
    let isDirectory: boolean;
    try {
      isDirectory = (await stat(mount.source)).isDirectory();
    } catch {
      throw new BottleError("INVALID_CONFIG", `cannot mount ${mount.source}: it does not exist`, {
        backend: "smolmachines",
        hint: "create the folder or remove the mount",
      });
    }
    if (!isDirectory) {
      throw new BottleError("INVALID_CONFIG", `cannot mount ${mount.source}: smolvm mounts folders only`, {
        backend: "smolmachines",
        hint: "mount the folder that contains it instead",
      });
    }
  }
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw aborted(signal.reason);
}

function aborted(cause: unknown): BottleError {
  return abortedError("the smolmachines session", { backend: "smolmachines", cause });
}
