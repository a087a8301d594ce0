// What the example decides before it runs docker: its options, an absent docker CLI, and the runs
// it refuses because it cannot make them safe. The docker CLI here is a path that does not exist,
// so a run that got as far as docker would fail with RUN_FAILED instead.
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BottleError, type RunSpecInput, runSpecSchema } from "@claude-bottle/core";
import { describe, expect, it } from "vitest";
import minimalDocker, { optionsSchema } from "./index.js";

const noDocker = join(tmpdir(), "no-such-docker-cli");
const backend = minimalDocker({
  dockerPath: noDocker,
  image: { kind: "existing" },
  cacheDir: "/nonexistent",
  dataDir: "/nonexistent",
});
const spec = (input: Partial<RunSpecInput>) =>
  runSpecSchema.parse({ workspace: tmpdir(), home: tmpdir(), command: ["true"], name: "unit", ...input });

describe("the minimal-docker example backend", () => {
  it("takes dockerPath from its config section, docker by default", () => {
    expect(optionsSchema.parse({})).toEqual({ dockerPath: "docker" });
    expect(optionsSchema.safeParse({ dockerPath: "" }).success).toBe(false);
  });

  it("says why it is unavailable and what to do when the docker CLI is missing", async () => {
    const found = await backend.checkAvailability();
    expect(found).toMatchObject({ available: false, reason: expect.stringContaining(noDocker) });
    expect(found.fix).toMatch(/install Docker/);
  });

  it("refuses a credential without passthrough, and an allow-list, before running anything", async () => {
    const refused = [
      spec({ secrets: { ANTHROPIC_API_KEY: "sk-ant-unit" }, network: { mode: "open" } }),
      spec({ network: { mode: "allowlist", allow: [] } }),
    ];
    for (const input of refused) {
      const error = await backend.run({ imageRef: "unused" }, input).catch((caught: unknown) => caught);
      expect(BottleError.is(error) && error.code).toBe("INVALID_CONFIG");
      expect(error).toMatchObject({ backend: "minimal-docker", hint: expect.any(String) });
    }
  });

  it("rejects an already aborted run with ABORTED", async () => {
    const error = await backend
      .run({ imageRef: "unused" }, spec({ network: { mode: "open" } }), { signal: AbortSignal.abort() })
      .catch((caught: unknown) => caught);
    expect(BottleError.is(error) && error.code).toBe("ABORTED");
  });
});
