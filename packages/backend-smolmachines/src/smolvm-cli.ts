/**
 * The smolvm CLI, driven through execa. Only this file knows smolvm's flags (see
 * shared docs/smolvm.md for the contract they come from).
 */
import { randomBytes } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { constants } from "node:os";
import { basename, dirname, join } from "node:path";
import { BottleError, commandError, type ErrorCode } from "@claude-bottle/core";
import { execa } from "execa";

export interface SmolvmCliOptions {
  /** The smolvm executable (default `smolvm` on PATH). */
  bin?: string;
  env?: NodeJS.ProcessEnv;
}

export interface PackCreateOptions {
  cpus?: number;
  memoryMiB?: number;
  signal?: AbortSignal;
}

/** What `pack create` wrote, under temporary names until it is published. */
export interface PackedArtifact {
  /**
   * Rename the stub into place, run `beforePublish` (the cache writes its metadata there), then
   * rename the sidecar: from that moment on it is a cache hit.
   */
  publish(beforePublish?: () => Promise<void>): Promise<void>;
  /** Remove the temporary files that were not published. */
  discard(): Promise<void>;
}

/** A host folder attached to a machine. smolvm mounts directories only. */
export interface MachineMount {
  source: string;
  /** Absolute path inside the guest. */
  target: string;
  readOnly: boolean;
}

/** Egress as smolvm expresses it: off, open, or restricted to hosts and CIDR blocks. */
export type MachineNetwork =
  | { kind: "none" }
  | { kind: "open" }
  | { kind: "allowlist"; hosts: string[]; cidrs: string[] };

/**
 * A credential bound to hosts (`--credential NAME=ENV@HOST[,HOST…]`, smolvm 1.18.2 and later): the
 * guest's ENV holds a placeholder, and smolvm substitutes the value of ENV from its own
 * environment into HTTPS request headers to those hosts only.
 */
export interface MachineCredential {
  name: string;
  envVar: string;
  hosts: string[];
}

export interface MachineCreateOptions {
  /** The packed sidecar (`….smolmachine`) to boot. */
  from: string;
  mounts: MachineMount[];
  network: MachineNetwork;
  credentials?: MachineCredential[];
  /** Guest ports published on the host (`-p HOST:GUEST`); they count toward the devices limit with mounts. */
  ports?: { hostPort: number; port: number }[];
  cpus?: number;
  memoryMiB?: number;
}

export interface MachineExecOptions {
  command: string[];
  workdir?: string;
  /** Plain variables, passed as `-e K=V`. Nothing secret. */
  env: Record<string, string>;
  /**
   * Secret variables, passed as `-e NAME` with the value only in smolvm's own environment, so
   * they never appear on a command line.
   */
  secrets: Record<string, string>;
  /** Allocate a PTY (`-i -t`, interactive). Otherwise `-i`: output streams live, stdout and stderr apart. */
  tty: boolean;
  /** Forward this process's stdin (always when `tty`). */
  stdin: boolean;
  /** Values for smolvm's own environment only (credential bindings); no `-e` for these. */
  hostEnv?: Record<string, string>;
}

export interface MachineExecResult {
  /** The guest command's exit code (128+N when it died of signal N). */
  exitCode: number;
}

/** The payload file smolvm writes next to a packed stub. */
export const sidecarPath = (stubPath: string) => `${stubPath}.smolmachine`;

/** The prefix of every temporary name in the cache folder: never a cache hit, always safe to prune. */
export const partialPrefix = ".partial-";

/** `machine create` argv (after the binary). */
export function machineCreateArgs(name: string, options: MachineCreateOptions): string[] {
  const args = ["machine", "create", "--name", name, "--from", options.from];
  for (const mount of options.mounts)
    args.push("-v", `${mount.source}:${mount.target}${mount.readOnly ? ":ro" : ""}`);
  const network = options.network;
  if (network.kind === "open") args.push("--net");
  if (network.kind === "allowlist") {
    for (const host of network.hosts) args.push("--allow-host", host);
    for (const cidr of network.cidrs) args.push("--allow-cidr", cidr);
  }
  for (const credential of options.credentials ?? [])
    args.push("--credential", `${credential.name}=${credential.envVar}@${credential.hosts.join(",")}`);
  for (const port of options.ports ?? []) args.push("-p", `${port.hostPort}:${port.port}`);
  if (options.cpus !== undefined) args.push("--cpus", String(Math.max(1, Math.ceil(options.cpus))));
  if (options.memoryMiB !== undefined) args.push("--mem", String(options.memoryMiB));
  return args;
}

/** `machine exec` argv (after the binary). `exec` has no `-n`: the name is always `--name`. */
export function machineExecArgs(name: string, options: MachineExecOptions): string[] {
  const args = ["machine", "exec", "--name", name, "-i"];
  if (options.tty) args.push("-t");
  if (options.workdir) args.push("-w", options.workdir);
  // A bound credential's variable holds smolvm's placeholder in the guest: nothing may overwrite it.
  const bound = options.hostEnv ?? {};
  for (const [key, value] of Object.entries(options.env)) {
    if (!(key in options.secrets) && !(key in bound)) args.push("-e", `${key}=${value}`);
  }
  for (const key of Object.keys(options.secrets)) if (!(key in bound)) args.push("-e", key);
  args.push("--", ...options.command);
  return args;
}

/**
 * Whether a `machine exec` that exited 1 failed in smolvm rather than in the guest. smolvm's own
 * failures print `Error: …` on stderr and exit 1, which a guest can do too. With a PTY the guest's
 * stderr goes to stdout, so any `Error:` line on stderr is smolvm's; without one the guest shares
 * stderr, and only an `Error:` last line counts (a guest's crash usually ends in a stack trace).
 * Returns smolvm's message, or undefined when the exit code is the guest's.
 */
export function smolvmFailure(exitCode: number, stderrTail: string, tty: boolean): string | undefined {
  if (exitCode !== 1) return undefined;
  const lines = stderrTail
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter(Boolean);
  const candidates = tty ? lines : lines.slice(-1);
  return candidates.find((line) => line.startsWith("Error: "));
}

export class SmolvmCli {
  readonly bin: string;
  readonly env: NodeJS.ProcessEnv | undefined;

  constructor(options: SmolvmCliOptions = {}) {
    this.bin = options.bin ?? "smolvm";
    this.env = options.env;
  }

  async version(): Promise<string> {
    const out = await this.call(["--version"], "BACKEND_UNAVAILABLE", "asking smolvm for its version");
    return /\d+\.\d+\.\d+\S*/.exec(out)?.[0] ?? out;
  }

  /**
   * Pack `imageRef` (a registry reference) for `stubPath` and its sidecar `stubPath.smolmachine`.
   *
   * smolvm writes under a temporary stub name in the same folder (newer releases reject an
   * `--output` ending in `.smolmachine`, which our cache layout uses). The returned artifact's
   * `publish` renames both files into place, the sidecar last, so a sidecar at its final name is
   * always complete; `discard` removes whatever was not published. On failure nothing is left.
   */
  async packCreate(
    imageRef: string,
    stubPath: string,
    options: PackCreateOptions = {},
  ): Promise<PackedArtifact> {
    const partial = join(
      dirname(stubPath),
      `${partialPrefix}${basename(stubPath, ".smolmachine")}-${randomBytes(4).toString("hex")}`,
    );
    const discard = async () => {
      await rm(partial, { force: true });
      await rm(sidecarPath(partial), { force: true });
    };
    const args = ["pack", "create", "--image", imageRef, "--output", partial];
    if (options.cpus !== undefined) args.push("--cpus", String(Math.max(1, Math.ceil(options.cpus))));
    if (options.memoryMiB !== undefined) args.push("--mem", String(options.memoryMiB));
    const what = `smolvm pack create --image ${imageRef}`;
    try {
      await this.call(args, "PACK_FAILED", what, options.signal);
    } catch (error) {
      await discard();
      throw error;
    }
    return {
      discard,
      async publish(beforePublish) {
        try {
          await rename(partial, stubPath);
          await beforePublish?.();
          await rename(sidecarPath(partial), sidecarPath(stubPath));
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
          throw new BottleError(
            "PACK_FAILED",
            `${what} exited 0 but did not write ${basename(partial)}[.smolmachine]`,
            {
              backend: "smolmachines",
              hint: "check that smolvm is a release with `pack create` and that the cache folder is writable",
              cause: error,
            },
          );
        } finally {
          await discard();
        }
      },
    };
  }

  /** `hostEnv`: values smolvm reads from its own environment (the credentials bound by name). */
  async machineCreate(
    name: string,
    options: MachineCreateOptions,
    signal?: AbortSignal,
    hostEnv: Record<string, string> = {},
  ): Promise<void> {
    await this.call(
      machineCreateArgs(name, options),
      "RUN_FAILED",
      `smolvm machine create --name ${name}`,
      signal,
      hostEnv,
    );
  }

  /** smolvm resolves bound credentials from its environment when the machine starts: pass them here too. */
  async machineStart(
    name: string,
    signal?: AbortSignal,
    hostEnv: Record<string, string> = {},
  ): Promise<void> {
    await this.call(
      ["machine", "start", "--name", name],
      "RUN_FAILED",
      `smolvm machine start --name ${name}`,
      signal,
      hostEnv,
    );
  }

  async machineStop(name: string): Promise<void> {
    await this.call(["machine", "stop", "--name", name], "RUN_FAILED", `smolvm machine stop --name ${name}`);
  }

  async machineDelete(name: string): Promise<void> {
    await this.call(
      ["machine", "delete", "--name", name, "-f"],
      "RUN_FAILED",
      `smolvm machine delete --name ${name}`,
    );
  }

  /**
   * Run a command in a started machine with this process's terminal: stdout straight through,
   * stderr passed through too but also kept (its tail tells smolvm's failures from the guest's).
   * Resolves with the guest's exit code; throws RUN_FAILED for smolvm's own failures and ABORTED
   * when `signal` aborts.
   */
  async machineExec(
    name: string,
    options: MachineExecOptions,
    signal?: AbortSignal,
  ): Promise<MachineExecResult> {
    const what = `smolvm machine exec --name ${name}`;
    let tail = "";
    let result: Awaited<ReturnType<typeof execa>>;
    try {
      const subprocess = execa(this.bin, machineExecArgs(name, options), {
        // Secrets go to smolvm through its environment (`-e NAME` reads them there), never argv.
        env: { ...(this.env ?? process.env), ...options.hostEnv, ...options.secrets },
        extendEnv: false,
        stdin: options.tty || options.stdin ? "inherit" : "ignore",
        stdout: "inherit",
        stderr: "pipe",
        buffer: false,
        reject: false,
        cancelSignal: signal,
        forceKillAfterDelay: 5_000,
      });
      subprocess.stderr?.on("data", (chunk: Buffer) => {
        process.stderr.write(chunk);
        tail = (tail + chunk.toString("utf8")).slice(-4096);
      });
      result = await subprocess;
    } catch (error) {
      throw explainSmolvmError(error, "RUN_FAILED", what, this.bin);
    }
    if (result.isCanceled) {
      throw new BottleError("ABORTED", `${what} was cancelled`, { backend: "smolmachines", cause: result });
    }
    if (result.failed && result.exitCode === undefined && !result.signal) {
      throw explainSmolvmError(result, "RUN_FAILED", what, this.bin);
    }
    const exitCode =
      result.exitCode ??
      128 + (result.signal ? (constants.signals[result.signal as NodeJS.Signals] ?? 0) : 0);
    const failure = smolvmFailure(exitCode, tail, options.tty);
    if (failure) {
      throw new BottleError("RUN_FAILED", `${what} failed: ${failure.slice("Error: ".length)}`, {
        backend: "smolmachines",
        hint: "the machine started but smolvm could not run the command in it; see smolvm's message above",
        cause: result,
      });
    }
    return { exitCode };
  }

  private async call(
    args: string[],
    code: ErrorCode,
    what: string,
    signal?: AbortSignal,
    hostEnv: Record<string, string> = {},
  ) {
    try {
      const result = await execa(this.bin, args, {
        env: { ...(this.env ?? process.env), ...hostEnv },
        extendEnv: false,
        stdin: "ignore",
        cancelSignal: signal,
      });
      return result.stdout.trim();
    } catch (error) {
      throw explainSmolvmError(error, code, what, this.bin);
    }
  }
}

/** smolvm's own failures print `Error: …` on stderr and exit 1; that text is what it says. */
export function explainSmolvmError(error: unknown, code: ErrorCode, what: string, bin: string): BottleError {
  return commandError(error, {
    code,
    what,
    backend: "smolmachines",
    missing: {
      code: "BACKEND_UNAVAILABLE",
      message: `smolvm is not installed (no ${bin} on PATH)`,
      hint: "install smolvm from https://github.com/smol-machines/smolvm and run again",
    },
  });
}
