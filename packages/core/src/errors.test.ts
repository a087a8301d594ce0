import { describe, expect, it } from "vitest";
import { BottleError } from "./errors.js";

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
