/**
 * The one error type claude-bottle throws on purpose. Every failure a user can meet carries a
 * `code`, the backend it came from (when there is one), a message that says what happened and a
 * `hint` that says what to do next. The underlying error (often execa's, which already holds the
 * command, exit code and stderr) is kept as `cause`.
 */

const brand = Symbol.for("claude-bottle.error");

export type ErrorCode =
  /** A command line that cannot be parsed or combined; exit code 2. */
  | "USAGE"
  /** A config file or value that does not validate; exit code 2. */
  | "INVALID_CONFIG"
  /** A backend name that resolves to nothing, or to something that is not a backend. */
  | "BACKEND_NOT_FOUND"
  | "INVALID_BACKEND"
  /** The runtime a backend needs is missing or not usable here. */
  | "BACKEND_UNAVAILABLE"
  /** The container engine (Docker, Podman) does not answer, or its CLI is missing. */
  | "ENGINE_UNREACHABLE"
  /** Building, tagging, pushing or converting the agent image failed. */
  | "PREPARE_FAILED"
  | "REGISTRY_FAILED"
  | "PACK_FAILED"
  /** A headless run with no credential anywhere (environment, credential store); exit code 2. */
  | "NOT_LOGGED_IN"
  /** The stored credential cannot be read, written or trusted (a file others can read, a locked store). */
  | "CREDENTIAL_STORE_FAILED"
  /** Starting or supervising the bottle failed (not: the agent exited non-zero). */
  | "RUN_FAILED"
  /** The operation was cancelled by a signal (Ctrl-C). */
  | "ABORTED";

export interface BottleErrorOptions {
  backend?: string;
  hint?: string;
  cause?: unknown;
}

export class BottleError extends Error {
  readonly [brand] = true;
  readonly code: ErrorCode;
  readonly backend: string | undefined;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: BottleErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BottleError";
    this.code = code;
    this.backend = options.backend;
    this.hint = options.hint;
  }

  /** True for a BottleError from any copy of @claude-bottle/core, not only this one. */
  static is(value: unknown): value is BottleError {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }

  /** Codes that mean "the user asked for something malformed": the CLI exits 2 for these. */
  get isUsageError(): boolean {
    return this.code === "USAGE" || this.code === "INVALID_CONFIG";
  }
}

/**
 * The error of a cancelled operation, for code that received an AbortSignal: "<what> was
 * cancelled". A cause that is such an error already is returned as it is, so an abort reported
 * deep down is not wrapped again on its way up.
 */
export function abortedError(what: string, options: BottleErrorOptions = {}): BottleError {
  const { cause } = options;
  if (BottleError.is(cause) && cause.code === "ABORTED") return cause;
  return new BottleError("ABORTED", `${what} was cancelled`, options);
}

/**
 * Run `work`, then `cleanUp` whatever happened, and settle as a user would want to hear it: work's
 * own error if it failed (an error of the clean-up is then dropped: it is the lesser news, and the
 * clean-up's leftovers are its own to report), else clean-up's error if that failed, else both
 * results. For a run that starts something (a container, a machine) and must not leave it behind.
 */
export async function withCleanUp<T, C>(
  work: () => Promise<T>,
  cleanUp: () => Promise<C>,
): Promise<{ result: T; cleanedUp: C }> {
  let outcome: { result: T } | { error: unknown };
  try {
    outcome = { result: await work() };
  } catch (error) {
    outcome = { error };
  }
  let cleanedUp: C;
  try {
    cleanedUp = await cleanUp();
  } catch (error) {
    if ("error" in outcome) throw outcome.error;
    throw error;
  }
  if ("error" in outcome) throw outcome.error;
  return { result: outcome.result, cleanedUp };
}

/** How `commandError` explains a program that failed. */
export interface CommandFailure {
  /** The error code of an ordinary failure. */
  code: ErrorCode;
  /** What was being done, e.g. "building image x": "<what> failed: <its last output>". */
  what: string;
  backend?: string;
  /** What to say when the program is not installed at all. */
  missing: { code: ErrorCode; message: string; hint: string };
  /** A failure the program's own output names (its engine not answering...), said instead of the output. */
  recognise?: (stderr: string) => BottleError | undefined;
  /** The program's stderr when it was captured elsewhere (streamed, not buffered by execa). */
  output?: string;
}

/**
 * One way to turn a failed command-line call (execa's error) into a BottleError, for every program
 * claude-bottle drives (docker, podman, smolvm): cancelled → ABORTED; not installed → `missing`;
 * recognised → what `recognise` says; otherwise "<what> failed:" with the last lines of its output.
 */
export function commandError(error: unknown, failure: CommandFailure): BottleError {
  if (BottleError.is(error)) return error;
  const backend = failure.backend ? { backend: failure.backend } : {};
  if (isCommandError(error)) {
    if (error.isCanceled || error.isTerminated)
      return abortedError(failure.what, { ...backend, cause: error });
    if (error.code === "ENOENT") {
      return new BottleError(failure.missing.code, failure.missing.message, {
        ...backend,
        hint: failure.missing.hint,
        cause: error,
      });
    }
    const stderr = (failure.output ?? String(error.stderr ?? "")).trim();
    const recognised = failure.recognise?.(stderr);
    if (recognised) return recognised;
    const detail = lastLines(stderr || String(error.stdout ?? "").trim(), 12);
    return new BottleError(
      failure.code,
      `${failure.what} failed${detail ? `:\n${detail}` : typeof error.exitCode === "number" ? ` with exit code ${error.exitCode}` : ""}`,
      { ...backend, cause: error },
    );
  }
  return new BottleError(failure.code, `${failure.what} failed: ${String(error)}`, {
    ...backend,
    cause: error,
  });
}

/**
 * The fields of execa's error this needs, told by shape: importing execa here would load it at
 * the start of every command that merely reports an error.
 */
interface FailedCommand extends Error {
  isCanceled?: boolean;
  isTerminated?: boolean;
  code?: string;
  exitCode?: number;
  stderr?: unknown;
  stdout?: unknown;
}

function isCommandError(error: unknown): error is FailedCommand {
  return error instanceof Error && "isCanceled" in error && "command" in error;
}

/** The last `count` lines of `text`. */
export function lastLines(text: string, count: number): string {
  return text.split("\n").slice(-count).join("\n").trim();
}
