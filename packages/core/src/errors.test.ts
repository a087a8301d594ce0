import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { abortedError, BottleError, commandError, withCleanUp } from "./errors.js";

describe("BottleError", () => {
  it("keeps code, backend, hint and cause", () => {
    const cause = new Error("exit 1");
    const error = new BottleError("PACK_FAILED", "smolvm pack create failed", {
      backend: "smolmachines",
      hint: "see above",
      cause,
    });
    expect(error).toMatchObject({ code: "PACK_FAILED", backend: "smolmachines", hint: "see above", cause });
    expect(error.message).toBe("smolvm pack create failed");
  });

  it("is recognised across copies of core by its brand, not by instanceof", () => {
    // What a second installed copy of @claude-bottle/core would throw: same brand, other class.
    const otherCopy = Object.assign(new Error("x"), {
      [Symbol.for("claude-bottle.error")]: true,
      code: "RUN_FAILED",
    });
    expect(BottleError.is(otherCopy)).toBe(true);
    expect(BottleError.is(new Error("x"))).toBe(false);
    expect(BottleError.is({ code: "RUN_FAILED" })).toBe(false);
    expect(BottleError.is(undefined)).toBe(false);
  });

  it("marks usage and config errors, which exit 2", () => {
    expect(new BottleError("USAGE", "x").isUsageError).toBe(true);
    expect(new BottleError("INVALID_CONFIG", "x").isUsageError).toBe(true);
    expect(new BottleError("RUN_FAILED", "x").isUsageError).toBe(false);
  });
});

describe("abortedError", () => {
  it("says what was cancelled, and keeps an abort reported further down as it is", () => {
    const error = abortedError("the run of the bottle b1", { backend: "docker" });
    expect(error).toMatchObject({
      code: "ABORTED",
      backend: "docker",
      message: "the run of the bottle b1 was cancelled",
    });
    expect(abortedError("the session", { cause: error })).toBe(error);
    expect(abortedError("the session", { cause: new Error("x") }).message).toBe("the session was cancelled");
  });
});

describe("withCleanUp", () => {
  it("cleans up after success and returns both results", async () => {
    const steps: string[] = [];
    const settled = await withCleanUp(
      async () => steps.push("work") && 7,
      async () => steps.push("clean") && ["denied.example"],
    );
    expect(settled).toEqual({ result: 7, cleanedUp: ["denied.example"] });
    expect(steps).toEqual(["work", "clean"]);
  });

  it("cleans up after a failure and reports the work's error, not the clean-up's", async () => {
    let cleaned = false;
    const failing = withCleanUp(
      async () => {
        throw new BottleError("RUN_FAILED", "the run failed");
      },
      async () => {
        cleaned = true;
        throw new Error("clean-up failed too");
      },
    );
    await expect(failing).rejects.toMatchObject({ message: "the run failed" });
    expect(cleaned).toBe(true);
  });

  it("reports the clean-up's error when the work succeeded", async () => {
    await expect(
      withCleanUp(
        async () => 0,
        async () => {
          throw new Error("volume left behind");
        },
      ),
    ).rejects.toThrow("volume left behind");
  });
});

describe("commandError", () => {
  const failure = {
    code: "RUN_FAILED" as const,
    what: "running the tool",
    backend: "example",
    missing: {
      code: "BACKEND_UNAVAILABLE" as const,
      message: "the tool is not installed",
      hint: "install it",
    },
  };
  const failed = (promise: Promise<unknown>) =>
    promise.then(
      () => expect.unreachable(),
      (error: unknown) => error,
    );

  it("says what failed with the last lines of the program's output", async () => {
    const error = commandError(
      await failed(execa("sh", ["-c", "echo starting; echo 'it broke' >&2; exit 3"])),
      failure,
    );
    expect(error).toMatchObject({
      code: "RUN_FAILED",
      backend: "example",
      message: "running the tool failed:\nit broke",
    });
  });

  it("says the program is missing, cancelled, or what its output names", async () => {
    expect(commandError(await failed(execa("/nonexistent/tool")), failure)).toMatchObject({
      code: "BACKEND_UNAVAILABLE",
      message: "the tool is not installed",
      hint: "install it",
    });
    const controller = new AbortController();
    const running = execa("sleep", ["5"], { cancelSignal: controller.signal });
    controller.abort();
    expect(commandError(await failed(running), failure)).toMatchObject({
      code: "ABORTED",
      message: "running the tool was cancelled",
    });
    const recognised = commandError(await failed(execa("sh", ["-c", "echo 'engine down' >&2; exit 1"])), {
      ...failure,
      recognise: (stderr) =>
        stderr.includes("engine down") ? new BottleError("ENGINE_UNREACHABLE", "no engine") : undefined,
    });
    expect(recognised).toMatchObject({ code: "ENGINE_UNREACHABLE", message: "no engine" });
  });
});
