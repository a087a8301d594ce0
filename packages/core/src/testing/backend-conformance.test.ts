// The conformance suite's own tests. They run it against a TEST FIXTURE, the "host process
// backend" below, which is not shipped and not a sandbox: it runs the bottle's command as a plain
// child process on this machine. A correct fixture passes the whole suite; each deliberately
// broken variant makes the check for the rule it breaks fail.
import { type ChildProcess, spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import { constants } from "node:os";
import { afterAll, describe, expect, it } from "vitest";
import type { Backend, BottleInfo } from "../backend.js";
import { BottleError } from "../errors.js";
import type { RunResult, RunSpec } from "../run-spec.js";
import {
  type BackendConformanceOptions,
  backendConformanceChecks,
  backendConformanceSuite,
  type ConformanceContext,
  createConformanceContext,
} from "./backend-conformance.js";

/** Ways a variant of the fixture breaks the contract. */
type Flaw =
  | "exit-code-always-0"
  | "drops-env"
  | "runs-in-home"
  | "ignores-abort"
  | "ignores-aborted-signal"
  | "abort-plain-error"
  | "ignores-user"
  | "lists-nothing"
  | "creates-missing-workspace"
  | "plain-usage-error"
  | "rejects-own-prepared"
  | "claims-read-only-paths"
  | "claims-credentials"
  | "claims-memory-limit"
  | "claims-denial-log";

interface HostPrepared {
  readonly fixture: "host-process";
  readonly imageRef: string;
}

/** Every child any fixture started, so the tests can end those a broken variant leaves behind. */
const started = new Set<ChildProcess>();

function kill(child: ChildProcess) {
  // The child leads its own process group (detached), so this ends the script and its sleeps.
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null)
    process.kill(-child.pid, "SIGKILL");
}

afterAll(() => {
  for (const child of started) kill(child);
});

/** TEST FIXTURE: a backend that runs commands as child processes of this test, on the host. */
function hostProcessBackend(flaw?: Flaw): Backend<HostPrepared> {
  const name = "host-process-fixture";
  const running = new Map<string, { child: ChildProcess; info: BottleInfo }>();
  let counter = 0;

  return {
    name,
    // A host process runs as spec.user when the tests run as root; it can't make a path read-only,
    // keep the credential from the child, cap its memory or log what it could not reach: only the
    // broken variants claim those.
    capabilities: {
      user: process.getuid?.() === 0,
      ...(flaw === "claims-read-only-paths" && { readOnlyPaths: true }),
      ...(flaw === "claims-credentials" && { credentials: true }),
      ...(flaw === "claims-memory-limit" && { resources: { memoryMiB: true } }),
      ...(flaw === "claims-denial-log" && { egress: true, denialLog: true }),
    },
    async checkAvailability() {
      return { available: true, version: `Node.js ${process.version}` };
    },
    async prepare(imageRef) {
      return { fixture: "host-process", imageRef };
    },
    async run(prepared, spec: RunSpec, options = {}): Promise<RunResult> {
      if (prepared?.fixture !== "host-process" || flaw === "rejects-own-prepared") {
        throw new BottleError("RUN_FAILED", "this is not something prepare() returned", { backend: name });
      }
      const exists = await stat(spec.workspace).then(
        (info) => info.isDirectory(),
        () => false,
      );
      if (!exists) {
        if (flaw === "plain-usage-error") throw new Error("no workspace");
        if (flaw !== "creates-missing-workspace") {
          throw new BottleError("USAGE", `the workspace ${spec.workspace} does not exist`, {
            backend: name,
            hint: "create the folder or run claude-bottle from an existing one",
          });
        }
        const { mkdir } = await import("node:fs/promises");
        await mkdir(spec.workspace, { recursive: true });
      }
      if (options.signal?.aborted && flaw !== "ignores-aborted-signal")
        throw new BottleError("ABORTED", "the run was cancelled", { backend: name });

      const [file, ...args] = spec.command;
      const user = flaw === "ignores-user" ? undefined : spec.user;
      const child = spawn(file!, args, {
        cwd: flaw === "runs-in-home" ? spec.home : spec.workspace,
        env: {
          PATH: process.env.PATH,
          HOME: spec.home,
          ...(flaw === "drops-env" ? {} : spec.env),
          ...spec.secrets,
        },
        stdio: "ignore",
        detached: true,
        ...(user ? { uid: user.uid, gid: user.gid } : {}),
      });
      started.add(child);
      const bottleName = `${spec.name}-${++counter}`;
      running.set(bottleName, {
        child,
        info: {
          name: bottleName,
          backend: name,
          workspace: spec.workspace,
          startedAt: new Date().toISOString(),
          status: "running",
        },
      });
      return await new Promise<RunResult>((resolve, reject) => {
        const onAbort = () => {
          if (flaw !== "ignores-abort") kill(child);
          reject(
            flaw === "abort-plain-error"
              ? new Error("killed")
              : new BottleError("ABORTED", "the run was cancelled", { backend: name }),
          );
        };
        options.signal?.addEventListener("abort", onAbort, { once: true });
        child.once("error", (error) => {
          running.delete(bottleName);
          reject(new BottleError("RUN_FAILED", `cannot start ${file}`, { backend: name, cause: error }));
        });
        child.once("exit", (code, signal) => {
          running.delete(bottleName);
          options.signal?.removeEventListener("abort", onAbort);
          const exitCode = code ?? 128 + (signal ? constants.signals[signal] : 0);
          resolve({ exitCode: flaw === "exit-code-always-0" ? 0 : exitCode });
        });
      });
    },
    async listBottles() {
      return flaw === "lists-nothing" ? [] : [...running.values()].map(({ info }) => info);
    },
    async stopBottle(bottleName) {
      const bottle = running.get(bottleName);
      if (bottle) kill(bottle.child);
    },
  };
}

// Switching to another uid needs root; elsewhere the suite runs without spec.user.
const user = process.getuid?.() === 0 ? { uid: 1001, gid: 1001 } : undefined;
const timeouts = { checkTimeoutMs: 20_000, abortTimeoutMs: 3_000 };

backendConformanceSuite({
  name: "the host process fixture",
  createBackend: () => hostProcessBackend(),
  imageRef: "no-image-needed",
  user,
  ...timeouts,
});

function checkNamed(id: string) {
  const found = backendConformanceChecks.find((candidate) => candidate.id === id);
  if (!found) throw new Error(`no conformance check ${id}`);
  return found;
}

describe("each conformance check fails for a backend that breaks its rule", () => {
  const contexts: ConformanceContext<HostPrepared>[] = [];
  const contextFor = async (flaw: Flaw, extra: Partial<BackendConformanceOptions<HostPrepared>> = {}) => {
    const context = await createConformanceContext({
      name: flaw,
      createBackend: () => hostProcessBackend(flaw),
      imageRef: "no-image-needed",
      user,
      ...timeouts,
      ...extra,
    });
    contexts.push(context);
    return context as ConformanceContext;
  };
  afterAll(async () => {
    for (const context of contexts) await context.cleanup();
  });

  const cases: Array<[Flaw, string, RegExp]> = [
    ["rejects-own-prepared", "prepare", /this is not something prepare\(\) returned/],
    ["exit-code-always-0", "exit-code", /`exit 3` must resolve with exitCode 3, got 0/],
    ["runs-in-home", "workspace", /must start in the workspace .*; it started in .*home-/],
    [
      "drops-env",
      "env",
      /CLAUDE_BOTTLE_CONFORMANCE_PLAIN must be "plain-value" in the bottle, was "<unset>"/,
    ],
    ["ignores-abort", "abort", /kept running after the run settled/],
    [
      "ignores-aborted-signal",
      "abort-before-start",
      /run\(\) with an aborted signal did not settle within 3000 ms/,
    ],
    ["abort-plain-error", "abort", /must reject with a BottleError of code ABORTED .*got Error: killed/],
    ["lists-nothing", "list-stop", /listBottles\(\) must show the one running bottle .*found 0/],
    ["plain-usage-error", "usage-error", /must reject with a BottleError, got Error: no workspace/],
    ["creates-missing-workspace", "usage-error", /must reject; it resolved with \{"exitCode":0\}/],
    [
      "claims-read-only-paths",
      "read-only-paths",
      /claims capabilities\.readOnlyPaths, yet the bottle appended to a read-only file/,
    ],
    [
      "claims-credentials",
      "credentials",
      /declares capabilities\.credentials, yet the real credential is in the environment/,
    ],
    [
      "claims-memory-limit",
      "resources",
      /declares capabilities\.resources\.memoryMiB, yet a bottle limited to 256 MiB sees no such limit/,
    ],
    [
      "claims-denial-log",
      "denial-log",
      /declares capabilities\.denialLog, yet RunResult\.deniedHosts does not name/,
    ],
  ];
  if (user) cases.push(["ignores-user", "writes", /must run as uid 1001/]);

  it.each(cases)(
    "a backend that %s fails check %s",
    async (flaw, id, message) => {
      const context = await contextFor(flaw);
      await expect(checkNamed(id).run(context)).rejects.toThrow(message);
    },
    30_000,
  );

  it("the checks that a flaw does not touch still pass for that variant", async () => {
    const context = await contextFor("drops-env");
    for (const id of ["exit-code", "workspace", "writes"]) await checkNamed(id).run(context);
  });
});

describe("setting up the suite", () => {
  it("fails, rather than skips, when the backend is not available here", async () => {
    const unavailable: Backend = {
      ...hostProcessBackend(),
      checkAvailability: async () => ({
        available: false,
        reason: "no runtime found",
        fix: "install the runtime",
      }),
    };
    await expect(
      createConformanceContext({ name: "unavailable", createBackend: () => unavailable, imageRef: "x" }),
    ).rejects.toThrow(
      /backend "host-process-fixture" is not available here: no runtime found. install the runtime/,
    );
  });

  it("rejects something that is not a backend", async () => {
    await expect(
      createConformanceContext({
        name: "not a backend",
        createBackend: () => ({ name: "x" }) as unknown as Backend,
        imageRef: "x",
      }),
    ).rejects.toThrow(/createBackend\(\) returned something that is not a Backend/);
  });
});
