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
