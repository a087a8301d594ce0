import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BottleError, type RunSpecInput, runSpecSchema } from "@claude-bottle/core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { readMachineRecords, writeMachineRecord } from "./machine-records.js";
import {
  listMachines,
  type MachineCli,
  runSmolmachine,
  stopMachine,
  sweepOrphanedMachines,
} from "./run-smolmachine.js";
import type { MachineCreateOptions, MachineExecOptions } from "./smolvm-cli.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cb-run."));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const spec = (overrides: Partial<RunSpecInput> = {}) =>
  runSpecSchema.parse({
    workspace: dir,
    home: join(dir, "home"),
    command: ["true"],
    name: "bottle",
    ...overrides,
  });

/** A smolvm that records calls; `exec` does what the test says. */
function fakeSmolvm(exec: MachineCli["machineExec"] = async () => ({ exitCode: 0 })) {
  const calls: string[] = [];
  const smolvm = {
    version: vi.fn(async () => "1.22.2"),
    machineCreate: vi.fn(
      async (name: string, _options: MachineCreateOptions) => void calls.push(`create ${name}`),
    ),
    machineStart: vi.fn(async (name: string) => void calls.push(`start ${name}`)),
    machineExec: vi.fn(async (name: string, options: MachineExecOptions, signal?: AbortSignal) => {
      calls.push(`exec ${name}`);
      return exec(name, options, signal);
    }),
    machineStop: vi.fn(async (name: string) => void calls.push(`stop ${name}`)),
    machineDelete: vi.fn(async (name: string) => void calls.push(`delete ${name}`)),
  } satisfies MachineCli;
  return { smolvm, calls };
}

const records = () => join(dir, "records");

const names = (calls: string[]) => new Set(calls.map((call) => call.split(" ")[1]));

describe("runSmolmachine", () => {
  it("creates, starts, execs, then stops and deletes one uniquely named machine, returning the guest's exit code", async () => {
    const { smolvm, calls } = fakeSmolvm(async () => ({ exitCode: 7 }));
    const result = await runSmolmachine("/c/x.smolmachine.smolmachine", spec(), {
      smolvm,
      recordsDir: records(),
    });
    expect(result).toEqual({ exitCode: 7 });
    expect(calls.map((call) => call.split(" ")[0])).toEqual(["create", "start", "exec", "stop", "delete"]);
    const [name] = names(calls);
    expect(names(calls).size).toBe(1);
    expect(name).toMatch(/^bottle-[0-9a-f]{8}$/);
    const second = fakeSmolvm();
    await runSmolmachine("/c/x.smolmachine.smolmachine", spec(), {
      smolvm: second.smolvm,
      recordsDir: records(),
    });
    expect(names(second.calls).has(name!)).toBe(false);
  });

  it("creates the home folder when it is missing", async () => {
    const { smolvm } = fakeSmolvm();
    await runSmolmachine("/c/x", spec({ home: join(dir, "deep", "home") }), {
      smolvm,
      recordsDir: records(),
    });
    const [, options] = smolvm.machineCreate.mock.calls[0]!;
    expect(options?.mounts[1]).toEqual({
      source: join(dir, "deep", "home"),
      target: "/home/claude",
      readOnly: false,
    });
  });

  it("stops and deletes the machine when exec fails, and passes the failure on", async () => {
    const failure = new BottleError("RUN_FAILED", "smolvm machine exec failed: lost the agent");
    const { smolvm, calls } = fakeSmolvm(async () => Promise.reject(failure));
    await expect(runSmolmachine("/c/x", spec(), { smolvm, recordsDir: records() })).rejects.toBe(failure);
    expect(calls.slice(-2).map((call) => call.split(" ")[0])).toEqual(["stop", "delete"]);
  });

  it("deletes the machine even when create fails half-way", async () => {
    const { smolvm, calls } = fakeSmolvm();
    smolvm.machineCreate.mockRejectedValueOnce(new BottleError("RUN_FAILED", "create failed"));
    await expect(runSmolmachine("/c/x", spec(), { smolvm, recordsDir: records() })).rejects.toThrow(
      "create failed",
    );
    expect(smolvm.machineStart).not.toHaveBeenCalled();
    expect(calls.at(-1)).toMatch(/^delete /);
  });

  it("on abort during exec, tears the machine down and rejects with ABORTED", async () => {
    const abort = new AbortController();
    const { smolvm, calls } = fakeSmolvm(
      (_name, _options, signal) =>
        new Promise((_resolve, reject) => {
          signal?.addEventListener("abort", () => reject(new Error("killed")));
          setTimeout(() => abort.abort(), 10);
        }),
    );
    await expect(
      runSmolmachine("/c/x", spec(), { smolvm, recordsDir: records(), signal: abort.signal }),
    ).rejects.toMatchObject({
      code: "ABORTED",
    });
    expect(calls.slice(-2).map((call) => call.split(" ")[0])).toEqual(["stop", "delete"]);
  });

  it("does not boot at all when already aborted or when smolvm could not attach the mounts", async () => {
    const { smolvm } = fakeSmolvm();
    await expect(
      runSmolmachine("/c/x", spec(), { smolvm, recordsDir: records(), signal: AbortSignal.abort() }),
    ).rejects.toMatchObject({ code: "ABORTED" });
    const mounts = ["a", "b", "c"].map((name) => ({ source: dir, target: `/${name}` }));
    await expect(
      runSmolmachine("/c/x", spec({ mounts }), { smolvm, recordsDir: records() }),
    ).rejects.toMatchObject({
      code: "INVALID_CONFIG",
    });
    await writeFile(join(dir, "file"), "");
    await expect(
      runSmolmachine("/c/x", spec({ mounts: [{ source: join(dir, "file"), target: "/f" }] }), {
        smolvm,
        recordsDir: records(),
      }),
    ).rejects.toMatchObject({ code: "INVALID_CONFIG", message: expect.stringContaining("folders only") });
    expect(smolvm.machineCreate).not.toHaveBeenCalled();
  });

  it("reports a machine it could not delete after the session, with the command to do it", async () => {
    const { smolvm } = fakeSmolvm(async () => ({ exitCode: 0 }));
    smolvm.machineDelete.mockRejectedValueOnce(new BottleError("RUN_FAILED", "database is locked"));
    const error = await runSmolmachine("/c/x", spec(), { smolvm, recordsDir: records() }).catch((e) => e);
    expect(error).toMatchObject({
      code: "RUN_FAILED",
      message: expect.stringContaining("could not be deleted"),
    });
    expect(error.hint).toMatch(/^delete it with: smolvm machine delete --name bottle-[0-9a-f]{8} -f$/);
  });

  it("records the machine while it runs (name, bottle, workspace, start, owner) and forgets it once deleted", async () => {
    let seen: Awaited<ReturnType<typeof readMachineRecords>> = [];
    let seenListed: Awaited<ReturnType<typeof listMachines>> = [];
    const { smolvm } = fakeSmolvm(async () => {
      seen = await readMachineRecords(records());
      seenListed = await listMachines(smolvm, records());
      return { exitCode: 0 };
    });
    await runSmolmachine("/c/x", spec(), { smolvm, recordsDir: records() });
    expect(seen).toEqual([
      {
        name: expect.stringMatching(/^bottle-[0-9a-f]{8}$/),
        bottle: "bottle",
        workspace: dir,
        startedAt: expect.any(String),
        owner: expect.objectContaining({ pid: process.pid, host: expect.any(String) }),
      },
    ]);
    // `ps` shows the machine with the name the run gave it, for `stop NAME` and the in-use check.
    expect(seenListed).toEqual([expect.objectContaining({ name: seen[0]!.name, bottle: "bottle" })]);
    expect(await readMachineRecords(records())).toEqual([]);
  });

  it("keeps the record of a machine it could not delete, so a later sweep retries", async () => {
    const { smolvm } = fakeSmolvm();
    smolvm.machineDelete.mockRejectedValueOnce(new BottleError("RUN_FAILED", "database is locked"));
    await runSmolmachine("/c/x", spec(), { smolvm, recordsDir: records() }).catch(() => {});
    expect(await readMachineRecords(records())).toHaveLength(1);
  });
});

describe("listing, stopping and sweeping machines", () => {
  const owner = { pid: 4242, bootId: "boot-a", host: "here" };
  const record = (name: string, overrides: Partial<typeof owner> = {}) =>
    writeMachineRecord(records(), {
      name,
      workspace: `/ws/${name}`,
      startedAt: "2026-01-01T00:00:00.000Z",
      owner: { ...owner, ...overrides },
    });
  const probe = (alive: number[]) => ({
    host: "here",
    bootId: "boot-a",
    isAlive: (pid: number) => alive.includes(pid),
  });

  it("sweeps machines whose owner died or ran in another boot, and leaves live and foreign owners alone", async () => {
    await record("live");
    await record("dead", { pid: 4343 });
    await record("old-boot", { bootId: "boot-z" });
    await record("other-host", { pid: 4343, host: "elsewhere" });
    const { smolvm, calls } = fakeSmolvm();
    const swept = await sweepOrphanedMachines(smolvm, records(), probe([4242]));
    expect(swept.sort()).toEqual(["dead", "old-boot"]);
    expect(calls.sort()).toEqual(["delete dead", "delete old-boot", "stop dead", "stop old-boot"]);
    expect((await readMachineRecords(records())).map((r) => r.name).sort()).toEqual(["live", "other-host"]);
  });

  it("lists live machines as bottles, and stop deletes one and forgets it", async () => {
    await writeMachineRecord(records(), {
      name: "bottle-0a0b0c0d",
      workspace: "/ws/a",
      startedAt: "2026-01-01T00:00:00.000Z",
      owner: { pid: process.pid, host: (await import("node:os")).hostname() },
    });
    const { smolvm, calls } = fakeSmolvm();
    expect(await listMachines(smolvm, records())).toEqual([
      {
        name: "bottle-0a0b0c0d",
        backend: "smolmachines",
        workspace: "/ws/a",
        startedAt: "2026-01-01T00:00:00.000Z",
        status: `running (claude-bottle pid ${process.pid})`,
      },
    ]);
    await stopMachine(smolvm, records(), "bottle-0a0b0c0d");
    expect(calls).toEqual(["stop bottle-0a0b0c0d", "delete bottle-0a0b0c0d"]);
    expect(await listMachines(smolvm, records())).toEqual([]);
    await expect(stopMachine(smolvm, records(), "bottle-0a0b0c0d")).rejects.toMatchObject({ code: "USAGE" });
  });
});
