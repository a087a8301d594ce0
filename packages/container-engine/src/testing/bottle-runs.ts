/**
 * What a container backend's integration tests share, Docker's and Podman's alike: runs started in
 * the background and aborted after a test that failed midway (so they clean up after themselves),
 * fresh bottles to run, and waiting for something the engine will show. For vitest test files only.
 */
import { randomBytes } from "node:crypto";
import { chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type Backend,
  type RunResult,
  type RunSpec,
  type RunSpecInput,
  runSpecSchema,
} from "@claude-bottle/core";
import { afterAll, afterEach, beforeAll } from "vitest";

export interface BackgroundRuns {
  /** Start a run in the background; the test awaits `run` itself. */
  start(spec: RunSpec): { run: Promise<RunResult>; controller: AbortController };
}

/** Register the file's hook that aborts runs a test left going, and return their starter. */
export function useBackgroundRuns<Prepared>(
  backend: Backend<Prepared>,
  prepared: () => Prepared,
): BackgroundRuns {
  const inFlight = new Set<{ controller: AbortController; settled: Promise<unknown> }>();
  afterEach(async () => {
    for (const entry of inFlight) entry.controller.abort();
    await Promise.all([...inFlight].map((entry) => entry.settled));
  });
  return {
    start(spec) {
      const controller = new AbortController();
      const run = backend.run(prepared(), spec, { signal: controller.signal });
      const entry = { controller, settled: run.catch(() => undefined) };
      inFlight.add(entry);
      void entry.settled.then(() => inFlight.delete(entry));
      return { run, controller };
    },
  };
}

export interface PreparedBackend<Prepared> extends BackgroundRuns {
  /** What `prepare` gave, once the file's beforeAll has run. */
  prepared(): Prepared;
  /** A scratch folder of the file's own (removed afterwards), for workspaces and homes. */
  scratch(): string;
}

/**
 * Register the file's hooks: a scratch folder, `backend.prepare(imageRef)` once before the tests,
 * and background runs aborted after each test. What a backend's integration test kit starts from.
 */
export function usePreparedBackend<Prepared>(
  backend: Backend<Prepared>,
  imageRef: string,
  scratchPrefix: string,
): PreparedBackend<Prepared> {
  let scratch: string | undefined;
  let prepared: Prepared | undefined;
  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), scratchPrefix));
    prepared = await backend.prepare(imageRef);
  });
  afterAll(async () => {
    if (!scratch) return;
    // What the backend keeps between runs for the file's workspaces (a project's warm gateway) goes
    // with them; another file's, running at the same time, stays.
    const kept = (await backend.listBottles?.().catch(() => [])) ?? [];
    for (const entry of kept.filter((bottle) => bottle.kept && bottle.workspace.startsWith(`${scratch}/`)))
      await backend.stopBottle?.(entry.name).catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
  });
  const { start } = useBackgroundRuns(backend, () => prepared as Prepared);
  return { prepared: () => prepared as Prepared, scratch: () => scratch as string, start };
}

/** Poll `probe` until it gives a value; fail naming `what` after `timeoutMs`. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

export interface TestBottle {
  spec: RunSpec;
  workspace: string;
  home: string;
}

/**
 * A fresh workspace and home under `scratch`, and a RunSpec running `true` there as `user` under a
 * unique name; `overrides` replace its fields. With `owner`, both folders are given to that user
 * (root makes folders for another user); `folder` names the workspace (a path with odd characters).
 */
export async function newTestBottle(
  scratch: string,
  options: {
    user: { uid: number; gid: number };
    overrides?: Partial<RunSpecInput>;
    owner?: { uid: number; gid: number };
    folder?: string;
  },
): Promise<TestBottle> {
  const root = await mkdtemp(join(scratch, "b-"));
  const workspace = join(root, options.folder ?? "workspace");
  const home = join(root, "home");
  for (const dir of [workspace, home]) {
    await mkdir(dir);
    if (options.owner) await chown(dir, options.owner.uid, options.owner.gid);
  }
  const spec = runSpecSchema.parse({
    workspace,
    home,
    user: options.user,
    command: ["true"],
    name: `claude-bottle-test-${randomBytes(4).toString("hex")}`,
    ...options.overrides,
  });
  return { spec, workspace, home };
}
