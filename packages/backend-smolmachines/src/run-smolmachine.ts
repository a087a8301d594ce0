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
import { BottleError, type RunResult, type RunSpec } from "@claude-bottle/core";
import { planMachine } from "./machine-plan.js";
import type { MachineMount, SmolvmCli } from "./smolvm-cli.js";

export type MachineCli = Pick<
  SmolvmCli,
  "machineCreate" | "machineStart" | "machineExec" | "machineStop" | "machineDelete"
>;

export interface RunSmolmachineOptions {
  smolvm: MachineCli;
  signal?: AbortSignal;
}

/** A machine name no other session uses: the bottle's name plus a random suffix. */
export function machineName(bottleName: string): string {
  return `${bottleName}-${randomBytes(4).toString("hex")}`;
}

export async function runSmolmachine(
  sidecar: string,
  spec: RunSpec,
  { smolvm, signal }: RunSmolmachineOptions,
): Promise<RunResult> {
  const plan = planMachine(spec, sidecar);
  await mkdir(spec.home, { recursive: true });
  await assertDirectories(plan.create.mounts);
  throwIfAborted(signal);

  const name = machineName(spec.name);
  let outcome: { result: RunResult } | { error: unknown };
  try {
    await smolvm.machineCreate(name, plan.create, signal);
    await smolvm.machineStart(name, signal);
    const { exitCode } = await smolvm.machineExec(name, plan.exec, signal);
    throwIfAborted(signal);
    outcome = { result: { exitCode } };
  } catch (error) {
    outcome = { error: signal?.aborted ? aborted(error) : error };
  }

  // Also after a create that failed or was killed half-way: it may have registered the machine.
  const leftover = await removeMachine(smolvm, name);
  if ("error" in outcome) throw outcome.error;
  if (leftover) {
    throw new BottleError(
      "RUN_FAILED",
      `the session ended with exit code ${outcome.result.exitCode}, but machine ${name} could not be deleted: ${leftover.message}`,
      {
        backend: "smolmachines",
        hint: `delete it with: smolvm machine delete --name ${name} -f`,
        cause: leftover,
      },
    );
  }
  return outcome.result;
}

/** Stop, then force-delete. A stop that fails (never started, already stopped) is fine; the delete decides. */
async function removeMachine(smolvm: MachineCli, name: string): Promise<Error | undefined> {
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
  if (BottleError.is(cause) && cause.code === "ABORTED") return cause;
  return new BottleError("ABORTED", "the smolmachines session was cancelled", {
    backend: "smolmachines",
    cause,
  });
}
