/**
 * The smolvm CLI, driven through execa. Only this file knows smolvm's flags.
 */
import { randomBytes } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { BottleError } from "@claude-bottle/core";
import { ExecaError, execa } from "execa";

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

/** The payload file smolvm writes next to a packed stub. */
export const sidecarPath = (stubPath: string) => `${stubPath}.smolmachine`;

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
   * Pack `imageRef` (a registry reference) into `stubPath` and its sidecar `stubPath.smolmachine`.
   *
   * smolvm writes under a temporary stub name in the same folder (newer releases reject an
   * `--output` ending in `.smolmachine`, which our cache layout uses) and both files are renamed
   * into place afterwards, the sidecar last: a sidecar at its final name is always complete.
   */
  async packCreate(imageRef: string, stubPath: string, options: PackCreateOptions = {}): Promise<void> {
    const partial = join(
      dirname(stubPath),
      `.partial-${basename(stubPath, ".smolmachine")}-${randomBytes(4).toString("hex")}`,
    );
    const args = ["pack", "create", "--image", imageRef, "--output", partial];
    if (options.cpus !== undefined) args.push("--cpus", String(Math.ceil(options.cpus)));
    if (options.memoryMiB !== undefined) args.push("--mem", String(options.memoryMiB));
    try {
      await this.call(args, "PACK_FAILED", `smolvm pack create --image ${imageRef}`, options.signal);
      await rename(partial, stubPath);
      await rename(sidecarPath(partial), sidecarPath(stubPath));
    } finally {
      await rm(partial, { force: true });
      await rm(sidecarPath(partial), { force: true });
    }
  }

  private async call(
    args: string[],
    code: "PACK_FAILED" | "BACKEND_UNAVAILABLE" | "RUN_FAILED",
    what: string,
    signal?: AbortSignal,
  ) {
    try {
      const result = await execa(this.bin, args, { env: this.env, stdin: "ignore", cancelSignal: signal });
      return result.stdout.trim();
    } catch (error) {
      throw explainSmolvmError(error, code, what, this.bin);
    }
  }
}

/** smolvm's own failures print `Error: …` on stderr and exit 1; surface that text. */
export function explainSmolvmError(
  error: unknown,
  code: "PACK_FAILED" | "BACKEND_UNAVAILABLE" | "RUN_FAILED",
  what: string,
  bin: string,
): BottleError {
  if (error instanceof ExecaError) {
    if ((error as { code?: string }).code === "ENOENT") {
      return new BottleError("BACKEND_UNAVAILABLE", `smolvm is not installed (no ${bin} on PATH)`, {
        backend: "smolmachines",
        hint: "install smolvm from https://github.com/smol-machines/smolvm and run again",
        cause: error,
      });
    }
    if (error.isCanceled || error.isTerminated) {
      return new BottleError("ABORTED", `${what} was cancelled`, { backend: "smolmachines", cause: error });
    }
    const stderr = String(error.stderr ?? "").trim();
    return new BottleError(
      code,
      `${what} failed${stderr ? `:\n${stderr}` : ` with exit code ${error.exitCode}`}`,
      {
        backend: "smolmachines",
        cause: error,
      },
    );
  }
  return new BottleError(code, `${what} failed: ${String(error)}`, { backend: "smolmachines", cause: error });
}
