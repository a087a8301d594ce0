/**
 * The Backend conformance suite: what every backend, ours or a third party's, must do, checked
 * with real runs. A backend's own test file runs it in a few lines:
 *
 *     backendConformanceSuite({
 *       name: "docker backend",
 *       createBackend: () => docker({ ...sharedOptions }),
 *       imageRef: "claude-bottle-test-agent:latest",
 *     });
 *
 * Every check is also exported on its own (`backendConformanceChecks`), so a backend can run one
 * check, and the suite's own tests can show that each check fails for a backend that breaks its
 * rule. Bottles run POSIX `sh -c` scripts; the image needs `sh`, `cat`, `printf`, `id`, `sleep`,
 * `grep`, `tr` and `cut`, and `node` for a backend that declares capabilities.denialLog.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, realpath, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { type Backend, type BottleInfo, bottleLabels, isBackend } from "../backend.js";
import { BottleError, type ErrorCode } from "../errors.js";
import { type RunResult, type RunSpec, type RunSpecInput, runSpecSchema } from "../run-spec.js";

export interface BackendConformanceOptions<Prepared = unknown> {
  /** What the suite is called in the test report, e.g. "docker backend". */
  name: string;
  /** Makes the backend under test: once to read its capabilities, once to run the checks. */
  createBackend: () => Backend<Prepared> | Promise<Backend<Prepared>>;
  /** The image the suite prepares and runs. */
  imageRef: string;
  /** RunSpec fields the backend needs besides the suite's own (network policy, resources...). */
  spec?: Partial<RunSpecInput>;
  /**
   * The API URL of the credential check (default https://api.anthropic.com): an https host name,
   * since a runtime may bind a credential to one only; one that resolves here if the backend needs
   * its address at start.
   */
  credentialApiUrl?: string;
  /** Run bottles as this user and check that files they write belong to it on the host. */
  user?: { uid: number; gid: number };
  /** Where workspaces and homes are made (default: the OS temp dir); the backend must be able to mount it. */
  tmpDir?: string;
  /** Longest one check may take (default 180 s). */
  checkTimeoutMs?: number;
  /** Longest availability check plus prepare may take (default 600 s). */
  prepareTimeoutMs?: number;
  /** Longest a run may take to settle after its signal aborts (default 30 s). */
  abortTimeoutMs?: number;
}

export interface ConformanceRun {
  spec: RunSpec;
  workspace: string;
}

/** What a check works with: the backend, its prepared image, and fresh workspaces. */
export interface ConformanceContext<Prepared = unknown> {
  readonly backend: Backend<Prepared>;
  readonly prepared: Prepared;
  readonly options: BackendConformanceOptions<Prepared>;
  /**
   * A fresh, empty workspace and home, and a valid RunSpec that runs `sh -c script sh ...args` there.
   * `overrides` replace the suite's fields (env, user, workspace...).
   */
  newRun(
    script: string,
    args?: string[] | ((workspace: string) => string[]),
    overrides?: Partial<RunSpecInput>,
  ): Promise<ConformanceRun>;
  /** A path inside the suite's temp dir that does not exist. */
  missingPath(): string;
  /** Remove everything the context made on the host. */
  cleanup(): Promise<void>;
}

export interface ConformanceCheck {
  /** A short stable id, e.g. "exit-code". */
  id: string;
  /** What the backend must do, as the test report shows it. */
  title: string;
  /**
   * Why the check does not apply to this backend (a capability it does not declare, an optional
   * method it lacks); undefined when it does. The suite registers only the checks that apply, so
   * nothing is reported as skipped.
   */
  notApplicable?(backend: Backend): string | undefined;
  run(context: ConformanceContext): Promise<void>;
}

/** A check that found the backend breaking the contract. */
export class ConformanceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConformanceError";
  }
}

function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new ConformanceError(message);
}

const defaultTimeouts = { check: 180_000, prepare: 600_000, abort: 30_000 };

/**
 * Make the backend, require it to be available (the suite fails, never skips, when it is not) and
 * prepare the image once for all checks.
 */
export async function createConformanceContext<Prepared>(
  options: BackendConformanceOptions<Prepared>,
): Promise<ConformanceContext<Prepared>> {
  const backend = await options.createBackend();
  check(
    isBackend(backend),
    `createBackend() returned something that is not a Backend: ${describeValue(backend)}`,
  );
  const found = await backend.checkAvailability();
  if (!found.available) {
    throw new ConformanceError(
      `backend "${backend.name}" is not available here: ${found.reason ?? "no reason given"}. ${found.fix ?? ""}`.trim(),
    );
  }
  const root = await realpath(await mkdtemp(join(options.tmpDir ?? tmpdir(), "claude-bottle-conformance-")));
  // Bottles may run as another user; they must reach the workspaces below.
  await chmod(root, 0o755);
  let prepared: Prepared;
  try {
    prepared = await backend.prepare(options.imageRef);
  } catch (error) {
    await rm(root, { recursive: true, force: true });
    throw error;
  }
  const suffix = randomBytes(3).toString("hex");
  let counter = 0;

  return {
    backend,
    prepared,
    options,
    async newRun(script, args = [], overrides = {}) {
      counter += 1;
      const workspace = join(root, `workspace-${counter}`);
      const home = join(root, `home-${counter}`);
      for (const dir of [workspace, home]) {
        await mkdir(dir);
        await chmod(dir, 0o777);
      }
      const spec = runSpecSchema.parse({
        ...options.spec,
        workspace,
        home,
        command: ["sh", "-c", script, "sh", ...(typeof args === "function" ? args(workspace) : args)],
        name: `claude-bottle-conformance-${suffix}-${counter}`,
        labels: {
          ...options.spec?.labels,
          [bottleLabels.workspace]: overrides.workspace ?? workspace,
          [bottleLabels.project]: basename(overrides.workspace ?? workspace),
        },
        ...(options.user ? { user: options.user } : {}),
        ...overrides,
      });
      return { spec, workspace };
    },
    missingPath: () => join(root, `missing-${randomBytes(4).toString("hex")}`),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

async function runChecked(context: ConformanceContext, spec: RunSpec): Promise<RunResult> {
  const { backend, prepared, options } = context;
  const result = await within(
    backend.run(prepared, spec),
    options.checkTimeoutMs ?? defaultTimeouts.check,
    `run() of \`${spec.command.join(" ")}\``,
  );
  check(
    typeof result?.exitCode === "number" && Number.isInteger(result.exitCode),
    `run() must resolve with { exitCode: number }, got ${describeValue(result)}`,
  );
  return result;
}

const availability: ConformanceCheck = {
  id: "availability",
  title: "has a name and reports availability in the documented shape",
  async run({ backend }) {
    check(isBackend(backend), "the backend lacks name, prepare, run or checkAvailability");
    const result = await backend.checkAvailability();
    check(
      typeof result?.available === "boolean",
      `checkAvailability() must resolve with { available: boolean }, got ${describeValue(result)}`,
    );
    for (const field of ["version", "reason", "fix"] as const) {
      const value = result[field];
      check(
        value === undefined || (typeof value === "string" && value.trim() !== ""),
        `checkAvailability().${field} must be a non-empty string when present, got ${describeValue(value)}`,
      );
    }
    if (!result.available) {
      check(result.reason && result.fix, "an unavailable backend must say why (reason) and what to do (fix)");
    }
  },
};

const prepareThenRun: ConformanceCheck = {
  id: "prepare",
  title: "prepare() returns something run() accepts, also when preparing again",
  async run(context) {
    const { backend, options } = context;
    // A backend may report its steps; a reporter that just runs them must do.
    const again = await within(
      backend.prepare(options.imageRef, { progress: { step: (_title, work) => work() } }),
      options.prepareTimeoutMs ?? defaultTimeouts.prepare,
      "prepare() a second time",
    );
    const { spec } = await context.newRun("exit 0");
    const result = await runChecked({ ...context, prepared: again }, spec);
    check(result.exitCode === 0, `a bottle running \`exit 0\` must exit 0, got ${result.exitCode}`);
  },
};

const exitCode: ConformanceCheck = {
  id: "exit-code",
  title: "run() resolves with the agent's own exit code",
  async run(context) {
    for (const expected of [3, 0]) {
      const { spec } = await context.newRun(`exit ${expected}`);
      const { exitCode: actual } = await runChecked(context, spec);
      check(
        actual === expected,
        `a bottle running \`exit ${expected}\` must resolve with exitCode ${expected}, got ${actual}`,
      );
    }
  },
};

const workspaceMount: ConformanceCheck = {
  id: "workspace",
  title: "mounts the workspace at the same absolute path and starts in it",
  async run(context) {
    const token = `marker-${randomBytes(4).toString("hex")}`;
    const { spec, workspace } = await context.newRun(
      'pwd > "$1/.seen-cwd" 2>/dev/null; [ "$(pwd)" = "$1" ] || exit 10; [ "$(cat marker.txt 2>/dev/null)" = "$2" ] || exit 11',
      (path) => [path, token],
    );
    await writeFile(join(workspace, "marker.txt"), token);
    const { exitCode: code } = await runChecked(context, spec);
    const seen = await readIfExists(join(workspace, ".seen-cwd"));
    check(
      code !== 10,
      `the bottle must start in the workspace ${workspace}; it started in ${seen?.trim() ?? "a folder that is not the workspace"}`,
    );
    check(
      code !== 11,
      `a file written to ${workspace} on the host must be readable at the same path in the bottle`,
    );
    check(code === 0, `the workspace check script must exit 0, got ${code}`);
  },
};

/** Values with the characters a careless quoting or env-file format breaks. */
const envValues = {
  CLAUDE_BOTTLE_CONFORMANCE_PLAIN: "plain-value",
  CLAUDE_BOTTLE_CONFORMANCE_TRICKY: `spaces and $HOME "double" 'single' back\\slash a=b;c|d`,
  CLAUDE_BOTTLE_CONFORMANCE_EMPTY: "",
};

const environment: ConformanceCheck = {
  id: "env",
  title: "sets spec.env inside the bottle, values unchanged",
  async run(context) {
    const names = Object.keys(envValues);
    const script = names
      .map(
        (name, index) =>
          `printf '%s' "\${${name}-<unset>}" > .seen-${index}; [ "\${${name}-<unset>}" = "$${index + 1}" ] || exit ${10 + index}`,
      )
      .join("; ");
    const { spec, workspace } = await context.newRun(script, Object.values(envValues), {
      env: { ...context.options.spec?.env, ...envValues },
    });
    const { exitCode: code } = await runChecked(context, spec);
    for (const [index, name] of names.entries()) {
      const seen = await readIfExists(join(workspace, `.seen-${index}`));
      check(
        code !== 10 + index,
        `${name} must be ${JSON.stringify(Object.values(envValues)[index])} in the bottle, was ${seen === undefined ? "not readable" : JSON.stringify(seen)}`,
      );
    }
    check(code === 0, `the env check script must exit 0, got ${code}`);
  },
};

const workspaceWrites: ConformanceCheck = {
  id: "writes",
  title:
    "files the bottle writes in the workspace appear on the host (owned by spec.user when capabilities.user says so)",
  async run(context) {
    const token = `written-in-the-bottle-${randomBytes(4).toString("hex")}`;
    const claims = context.backend.capabilities?.user === true;
    check(
      !claims || context.options.user,
      "the backend declares capabilities.user: give the suite a user to run bottles as (options.user)",
    );
    const user = claims ? context.options.user : undefined;
    const { spec, workspace } = await context.newRun(
      `mkdir -p out/nested && printf '%s' "$1" > out/nested/result.txt || exit 11${user ? `; [ "$(id -u)" = ${user.uid} ] || exit 12` : ""}`,
      [token],
    );
    const { exitCode: code } = await runChecked(context, spec);
    check(code !== 11, "the bottle must be able to create folders and files in the workspace");
    check(code !== 12, `the bottle must run as uid ${user?.uid} (spec.user)`);
    check(code === 0, `the write check script must exit 0, got ${code}`);
    const path = join(workspace, "out", "nested", "result.txt");
    const written = await readIfExists(path);
    check(
      written === token,
      `${path} must hold what the bottle wrote (${token}), found ${describeValue(written)}`,
    );
    if (user) {
      const owner = await stat(path);
      check(
        owner.uid === user.uid && owner.gid === user.gid,
        `files the bottle writes must belong to ${user.uid}:${user.gid} on the host (spec.user), got ${owner.uid}:${owner.gid}`,
      );
    }
  },
};

/** A script that proves the bottle is alive: it rewrites `heartbeat` with a new count every second. */
const heartbeatScript = 'i=0; while :; do i=$((i + 1)); echo "$i" > heartbeat; sleep 1; done';

const abortRunning: ConformanceCheck = {
  id: "abort",
  title: "aborting the signal rejects with ABORTED and leaves nothing running",
  async run(context) {
    const { backend, options } = context;
    const { spec, workspace } = await context.newRun(heartbeatScript);
    await withRunningBottle(context, spec, workspace, async (running, controller) => {
      controller.abort();
      const outcome = await within(
        running,
        options.abortTimeoutMs ?? defaultTimeouts.abort,
        "run() after its signal aborted",
      );
      expectAborted(outcome, backend.name);
      await expectStopped(context, workspace, spec);
    });
  },
};

const abortBeforeStart: ConformanceCheck = {
  id: "abort-before-start",
  title: "an already aborted signal rejects with ABORTED and leaves nothing running",
  async run(context) {
    const { backend, prepared, options } = context;
    const { spec, workspace } = await context.newRun(heartbeatScript);
    const outcome = await within(
      settle(backend.run(prepared, spec, { signal: AbortSignal.abort() })),
      options.abortTimeoutMs ?? defaultTimeouts.abort,
      "run() with an aborted signal",
    );
    expectAborted(outcome, backend.name);
    await expectStopped(context, workspace, spec);
  },
};

const listAndStop: ConformanceCheck = {
  id: "list-stop",
  title: "listBottles() shows a running bottle and stopBottle() ends it",
  notApplicable: (backend) =>
    backend.listBottles && backend.stopBottle
      ? undefined
      : "the backend has no listBottles/stopBottle (optional)",
  async run(context) {
    const { backend, options } = context;
    const { spec, workspace } = await context.newRun(heartbeatScript);
    await withRunningBottle(context, spec, workspace, async (running) => {
      const listed = (await backend.listBottles!()).filter(
        (bottle) => bottle.workspace === workspace && !bottle.kept,
      );
      check(
        listed.length === 1,
        `listBottles() must show the one running bottle of workspace ${workspace}, found ${listed.length}`,
      );
      const bottle = listed[0]!;
      checkBottleInfo(bottle, backend.name, spec.name);
      await backend.stopBottle!(bottle.name);
      await within(running, options.abortTimeoutMs ?? defaultTimeouts.abort, "run() after stopBottle()");
      await expectStopped(context, workspace, spec);
    });
  },
};

const readOnlyPaths: ConformanceCheck = {
  id: "read-only-paths",
  title:
    "runs a spec with readOnlyPaths, and keeps them unchanged (no write, create, rename) when capabilities.readOnlyPaths says so",
  async run(context) {
    const claims = context.backend.capabilities?.readOnlyPaths === true;
    // A folder like `.git`: a file like its config, a folder like its hooks, and room for more.
    const setUp = async (workspace: string) => {
      const guarded = join(workspace, "guarded");
      await mkdir(join(guarded, "hooks"), { recursive: true });
      await writeFile(join(guarded, "config"), "original\n");
      for (const path of [guarded, join(guarded, "hooks")]) await chmod(path, 0o777);
      await chmod(join(guarded, "config"), 0o666);
      return guarded;
    };
    // Each attack that works exits with its own code; then a write beside them must still work.
    const script = claims
      ? [
          "printf changed >> guarded/config 2>/dev/null && exit 10",
          "printf x > guarded/hooks/post-checkout 2>/dev/null && exit 11",
          "mv guarded/config guarded/config-moved 2>/dev/null && exit 12",
          "mv guarded guarded-moved 2>/dev/null && exit 13",
          "printf ok > guarded/free.txt || exit 14",
        ].join("; ")
      : "printf ok > guarded/free.txt || exit 14";
    const { workspace } = await context.newRun("exit 0");
    const guarded = await setUp(workspace);
    const { spec } = await context.newRun(script, [], {
      workspace,
      readOnlyPaths: [join(guarded, "config"), join(guarded, "hooks")],
    });
    const { exitCode: code } = await runChecked(context, spec);
    const messages: Record<number, string> = {
      10: "appended to a read-only file",
      11: "created a file in a read-only folder",
      12: "renamed a read-only file",
      13: "renamed the folder that holds read-only paths (the paths moved with it)",
    };
    check(!messages[code], `the backend claims capabilities.readOnlyPaths, yet the bottle ${messages[code]}`);
    check(code !== 14, "a file beside the read-only paths must stay writable in the bottle");
    check(code === 0, `the read-only paths script must exit 0, got ${code}`);
    check(
      (await readIfExists(join(workspace, "guarded", "free.txt"))) === "ok",
      "a file the bottle writes beside the read-only paths must appear on the host",
    );
    if (claims) {
      check(
        (await readIfExists(join(workspace, "guarded", "config"))) === "original\n",
        "a read-only file must be unchanged on the host after the run",
      );
      check(
        (await readIfExists(join(workspace, "guarded", "hooks", "post-checkout"), true)) === undefined,
        "nothing may appear in a read-only folder on the host",
      );
    }
  },
};

/**
 * The credential check's secret, and a grep pattern that matches it but not itself: one character
 * in brackets, so the pattern in a command line (grep's own, the script's) is not a match.
 */
function credentialProbe(): { secret: string; pattern: string } {
  const tail = randomBytes(16).toString("hex");
  return {
    secret: `sk-ant-api03-CONFORMANCE-${tail}`,
    pattern: `sk-ant-api03-CONFORMANCE-[${tail[0]}]${tail.slice(1)}`,
  };
}

const credentialOutside: ConformanceCheck = {
  id: "credentials",
  title:
    "the real credential is nowhere inside the bottle (env, /proc, files) and a placeholder stands in for it, when capabilities.credentials says so",
  notApplicable: (backend) =>
    backend.capabilities?.credentials ? undefined : "the backend does not declare capabilities.credentials",
  async run(context) {
    const { secret, pattern } = credentialProbe();
    const { spec } = await context.newRun(
      [
        '[ -n "$ANTHROPIC_API_KEY" ] || exit 20',
        '{ env; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr "\\000" "\\n"; } | grep -q -- "$1" && exit 21',
        'grep -rqs -D skip -- "$1" "$HOME" "$PWD" /tmp /etc /run /var/tmp 2>/dev/null && exit 22',
        "exit 0",
      ].join("; "),
      [pattern],
      // The public API: a runtime may bind a credential to a TLS host name only (smolvm does).
      {
        secrets: { ANTHROPIC_API_KEY: secret },
        passthroughCredentials: false,
        anthropicBaseUrl: context.options.credentialApiUrl ?? "https://api.anthropic.com",
      },
    );
    const { exitCode: code } = await runChecked(context, spec);
    check(
      code !== 20,
      "the bottle must get a placeholder ANTHROPIC_API_KEY (Claude Code does not start without one)",
    );
    check(
      code !== 21,
      "the backend declares capabilities.credentials, yet the real credential is in the environment of a process in the bottle",
    );
    check(
      code !== 22,
      "the backend declares capabilities.credentials, yet the real credential is in a file the bottle can read",
    );
    check(code === 0, `the credential check script must exit 0, got ${code}`);
  },
};

/** Limits the resources check asks for: small enough to tell from any machine's own. */
const probeLimits = { cpus: 1, memoryMiB: 256, pids: 200 };

const resourceLimits: ConformanceCheck = {
  id: "resources",
  title:
    "the resource limits of capabilities.resources hold inside the bottle (cgroup limits, or a VM's own size)",
  notApplicable: (backend) =>
    Object.values(backend.capabilities?.resources ?? {}).some(Boolean)
      ? undefined
      : "the backend declares no capabilities.resources",
  async run(context) {
    const claimed = context.backend.capabilities?.resources ?? {};
    const resources = Object.fromEntries(
      (Object.keys(probeLimits) as (keyof typeof probeLimits)[])
        .filter((key) => claimed[key])
        .map((key) => [key, probeLimits[key]]),
    );
    // What the bottle sees of its limits: cgroup v2 files, cgroup v1 files, and a VM's own size.
    const { spec, workspace } = await context.newRun(
      [
        "for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max; do",
        '  [ -r "$f" ] && printf "%s=%s\\n" "$f" "$(cat "$f")"',
        "done > .limits",
        'printf "meminfo=%s\\n" "$(grep MemTotal /proc/meminfo | tr -s " " | cut -d" " -f2)" >> .limits',
        'printf "nproc=%s\\n" "$(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo)" >> .limits',
      ].join("\n"),
      [],
      { resources },
    );
    const { exitCode: code } = await runChecked(context, spec);
    check(code === 0, `the resources check script must exit 0, got ${code}`);
    const seen = Object.fromEntries(
      ((await readIfExists(join(workspace, ".limits"))) ?? "")
        .split("\n")
        .filter((line) => line.includes("="))
        .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1).trim()]),
    );
    const number = (key: string) => (seen[key] && /^\d+$/.test(seen[key]) ? Number(seen[key]) : undefined);
    const lines = Object.entries(seen)
      .map(([key, value]) => `${key}=${value}`)
      .join(", ");
    if (claimed.memoryMiB) {
      const bytes = probeLimits.memoryMiB * 1024 * 1024;
      const limits = [
        number("/sys/fs/cgroup/memory.max"),
        number("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
      ];
      const vm = number("meminfo");
      check(
        limits.some((limit) => limit !== undefined && limit <= bytes) ||
          (vm !== undefined && vm * 1024 <= bytes),
        `the backend declares capabilities.resources.memoryMiB, yet a bottle limited to ${probeLimits.memoryMiB} MiB sees no such limit (${lines})`,
      );
    }
    if (claimed.cpus) {
      const v2 = seen["/sys/fs/cgroup/cpu.max"]?.split(/\s+/).map(Number);
      const quota =
        number("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") ??
        number("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us");
      const period =
        number("/sys/fs/cgroup/cpu/cpu.cfs_period_us") ??
        number("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us");
      const share =
        v2 && v2.length === 2 && v2.every(Number.isFinite)
          ? v2[0]! / v2[1]!
          : quota !== undefined && period
            ? quota / period
            : undefined;
      const vm = number("nproc");
      check(
        (share !== undefined && share > 0 && share <= probeLimits.cpus) ||
          (vm !== undefined && vm <= probeLimits.cpus),
        `the backend declares capabilities.resources.cpus, yet a bottle limited to ${probeLimits.cpus} CPU sees no such limit (${lines})`,
      );
    }
    if (claimed.pids) {
      const limit = number("/sys/fs/cgroup/pids.max") ?? number("/sys/fs/cgroup/pids/pids.max");
      check(
        limit !== undefined && limit <= probeLimits.pids,
        `the backend declares capabilities.resources.pids, yet a bottle limited to ${probeLimits.pids} processes sees no such limit (${lines})`,
      );
    }
  },
};

/**
 * A connection the policy refuses, from a Node script in the bottle: through the egress proxy the
 * backend names in HTTPS_PROXY when there is one (by host name), else straight to a documentation
 * address (by IP). Either way the refusal must come back in RunResult.deniedHosts and the log.
 */
const denialLog: ConformanceCheck = {
  id: "denial-log",
  title:
    "a connection the allow-list refuses is named in RunResult.deniedHosts and spec.deniedLogPath, when capabilities.denialLog says so",
  notApplicable: (backend) =>
    backend.capabilities?.denialLog ? undefined : "the backend does not declare capabilities.denialLog",
  async run(context) {
    const host = `denied-${randomBytes(3).toString("hex")}.example.com`;
    const address = "192.0.2.7";
    const script = String.raw`
      const net = require("node:net");
      const proxy = process.env.HTTPS_PROXY || process.env.https_proxy;
      const target = proxy ? new URL(proxy) : undefined;
      const socket = target ? net.connect(Number(target.port), target.hostname.replace(/^\[|\]$/g, "")) : net.connect(443, process.argv[2]);
      socket.setTimeout(5000, () => socket.destroy());
      socket.on("connect", () => { if (target) socket.write("CONNECT " + process.argv[1] + ":443 HTTP/1.1\r\nHost: " + process.argv[1] + ":443\r\n\r\n"); });
      socket.on("data", () => socket.destroy());
      socket.on("error", () => {});
      socket.on("close", () => process.exit(0));
    `;
    const log = join(context.missingPath(), "..", `denied-${randomBytes(3).toString("hex")}.jsonl`);
    const { spec } = await context.newRun('exec node -e "$1" "$2" "$3"', [script, host, address], {
      network: { mode: "allowlist", allow: [] },
      deniedLogPath: log,
    });
    const result = await runChecked(context, spec);
    const denied = result.deniedHosts ?? [];
    check(
      denied.includes(host) || denied.includes(address),
      `the backend declares capabilities.denialLog, yet RunResult.deniedHosts does not name the refused ${host} or ${address} (got ${describeValue(denied)})`,
    );
    const logged = (await readIfExists(log)) ?? "";
    check(
      logged.includes(host) || logged.includes(address),
      `the backend declares capabilities.denialLog, yet ${log} does not record the refused connection`,
    );
  },
};

/** Codes that fit a request the backend cannot carry out as given. */
const usageCodes: ErrorCode[] = ["USAGE", "INVALID_CONFIG", "RUN_FAILED"];

const usageError: ConformanceCheck = {
  id: "usage-error",
  title:
    "a workspace that does not exist is refused with a BottleError that names the backend and gives a hint",
  async run(context) {
    const { backend, prepared, options } = context;
    const missing = context.missingPath();
    const { spec } = await context.newRun("exit 0", [], { workspace: missing });
    const outcome = await within(
      settle(backend.run(prepared, spec)),
      options.checkTimeoutMs ?? defaultTimeouts.check,
      "run() with a missing workspace",
    );
    check(
      outcome.status === "rejected",
      `run() with a workspace that does not exist must reject; it resolved with ${describeValue(outcome.status === "fulfilled" ? outcome.value : undefined)}`,
    );
    const error = outcome.reason;
    check(BottleError.is(error), `run() must reject with a BottleError, got ${describeValue(error)}`);
    check(
      usageCodes.includes(error.code),
      `the error's code must be one of ${usageCodes.join(", ")}, got ${error.code}`,
    );
    check(
      error.backend === backend.name,
      `the error must name the backend ("${backend.name}"), got ${describeValue(error.backend)}`,
    );
    check(error.message.trim() !== "", "the error must say what happened (message)");
    check(
      typeof error.hint === "string" && error.hint.trim() !== "",
      "the error must say what to do next (hint)",
    );
    check(
      (await readIfExists(missing, true)) === undefined,
      `the backend must not create the missing workspace ${missing} on the host`,
    );
    if (backend.listBottles) {
      const left = (await backend.listBottles()).filter(
        (bottle) => bottle.workspace === missing && !bottle.kept,
      );
      check(
        left.length === 0,
        `a refused run must leave no bottle behind, found ${left.map((b) => b.name).join(", ")}`,
      );
    }
  },
};

/** Every check, in the order the suite runs them. */
export const backendConformanceChecks: readonly ConformanceCheck[] = [
  availability,
  prepareThenRun,
  exitCode,
  workspaceMount,
  environment,
  workspaceWrites,
  abortRunning,
  abortBeforeStart,
  listAndStop,
  readOnlyPaths,
  credentialOutside,
  resourceLimits,
  denialLog,
  usageError,
];

/**
 * Register the conformance checks that apply to the backend as vitest tests, in a describe block
 * named after it: every check of the contract, and one for each capability it declares. The
 * backend is made once while the tests are collected, to read what it declares.
 */
export function backendConformanceSuite<Prepared>(options: BackendConformanceOptions<Prepared>): void {
  describe(`${options.name} conforms to the Backend contract`, async () => {
    const declared = await options.createBackend();
    let context: ConformanceContext<Prepared> | undefined;
    beforeAll(async () => {
      context = await createConformanceContext(options);
    }, options.prepareTimeoutMs ?? defaultTimeouts.prepare);
    afterAll(async () => {
      await context?.cleanup();
    });
    for (const conformance of backendConformanceChecks) {
      if (isBackend(declared) && conformance.notApplicable?.(declared)) continue;
      it(
        conformance.title,
        async () => {
          check(context, "the backend could not be set up (see the error of beforeAll)");
          await conformance.run(context as ConformanceContext);
        },
        options.checkTimeoutMs ?? defaultTimeouts.check,
      );
    }
  });
}

type Outcome<T> = { status: "fulfilled"; value: T } | { status: "rejected"; reason: unknown };

/** The outcome of a promise as a value, so a check can wait for it and then judge it. */
function settle<T>(promise: Promise<T>): Promise<Outcome<T>> {
  return promise.then(
    (value) => ({ status: "fulfilled", value }),
    (reason: unknown) => ({ status: "rejected", reason }),
  );
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ConformanceError(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function expectAborted(outcome: Outcome<RunResult>, backendName: string): void {
  check(
    outcome.status === "rejected",
    `run() must reject once its signal aborts; it resolved with ${describeValue(outcome.status === "fulfilled" ? outcome.value : undefined)}`,
  );
  const error = outcome.reason;
  check(
    BottleError.is(error) && error.code === "ABORTED",
    `run() must reject with a BottleError of code ABORTED once its signal aborts, got ${describeValue(error)}`,
  );
  check(
    error.backend === undefined || error.backend === backendName,
    `the ABORTED error names backend ${describeValue(error.backend)}, not "${backendName}"`,
  );
}

/**
 * Start `spec` (a heartbeat script), wait until it beats, and hand the running bottle to `use`.
 * Whatever `use` does, the run is aborted and awaited (briefly) afterwards, so no bottle outlives
 * a failed check.
 */
async function withRunningBottle(
  context: ConformanceContext,
  spec: RunSpec,
  workspace: string,
  use: (running: Promise<Outcome<RunResult>>, controller: AbortController) => Promise<void>,
): Promise<void> {
  const { backend, prepared, options } = context;
  const controller = new AbortController();
  const running = settle(backend.run(prepared, spec, { signal: controller.signal }));
  try {
    await waitForHeartbeat(workspace, running, options.checkTimeoutMs ?? defaultTimeouts.check);
    await use(running, controller);
  } finally {
    controller.abort();
    await within(running, options.abortTimeoutMs ?? defaultTimeouts.abort, "cleanup").catch(() => undefined);
  }
}

/** Wait until the heartbeat script has run at least once, or fail if the run ends first. */
async function waitForHeartbeat(workspace: string, running: Promise<Outcome<RunResult>>, timeoutMs: number) {
  let ended: Outcome<RunResult> | undefined;
  void running.then((outcome) => {
    ended = outcome;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await readIfExists(join(workspace, "heartbeat"))) return;
    check(!ended, `the bottle ended before its script wrote to the workspace: ${describeValue(ended)}`);
    await sleep(100);
  }
  throw new ConformanceError(`the bottle's script did not write to the workspace within ${timeoutMs} ms`);
}

/** The bottle's script no longer runs, and the backend no longer lists it. */
async function expectStopped(context: ConformanceContext, workspace: string, spec: RunSpec): Promise<void> {
  const heartbeat = join(workspace, "heartbeat");
  const before = await readIfExists(heartbeat);
  await sleep(2500);
  const after = await readIfExists(heartbeat);
  check(
    before === after,
    `the bottle's script kept running after the run settled (heartbeat ${before?.trim()} → ${after?.trim()})`,
  );
  if (context.backend.listBottles) {
    // What a backend keeps between runs on purpose (a warm gateway) is not the bottle.
    const left = (await context.backend.listBottles()).filter(
      (bottle) =>
        !bottle.kept &&
        (bottle.workspace === workspace ||
          bottle.name === spec.name ||
          bottle.name.startsWith(`${spec.name}-`)),
    );
    check(
      left.length === 0,
      `the backend still lists the bottle after the run settled: ${left.map((b) => `${b.name} (${b.status})`).join(", ")}`,
    );
  }
}

function checkBottleInfo(bottle: BottleInfo, backendName: string, specName: string): void {
  check(
    bottle.backend === backendName,
    `a listed bottle's backend must be "${backendName}", got ${describeValue(bottle.backend)}`,
  );
  check(
    typeof bottle.name === "string" && bottle.name.startsWith(specName),
    `a listed bottle's name must start with spec.name (${specName}), got ${describeValue(bottle.name)}`,
  );
  check(
    typeof bottle.startedAt === "string" && !Number.isNaN(Date.parse(bottle.startedAt)),
    `a listed bottle's startedAt must be an ISO 8601 date, got ${describeValue(bottle.startedAt)}`,
  );
  check(typeof bottle.status === "string" && bottle.status !== "", "a listed bottle must have a status");
}

/** A file's text, or undefined when it does not exist; `anyKind` also reports folders (as ""). */
async function readIfExists(path: string, anyKind = false): Promise<string | undefined> {
  try {
    if (anyKind) {
      const info = await stat(path);
      if (!info.isFile()) return "";
    }
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describeValue(value: unknown): string {
  if (BottleError.is(value)) return `BottleError ${value.code}: ${value.message}`;
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (typeof value === "string") return JSON.stringify(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
