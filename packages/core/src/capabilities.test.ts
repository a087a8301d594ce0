import { describe, expect, it } from "vitest";
import type { BackendCapabilities } from "./backend.js";
import { capabilityGaps, passthroughWarning } from "./capabilities.js";
import { BottleError } from "./errors.js";
import { type RunSpecInput, runSpecSchema } from "./run-spec.js";

const spec = (overrides: Partial<RunSpecInput> = {}) =>
  runSpecSchema.parse({
    workspace: "/work/project",
    home: "/data/home",
    command: ["claude"],
    name: "claude-bottle-project-abc123",
    ...overrides,
  });

const everything: BackendCapabilities = {
  credentials: true,
  egress: true,
  denialLog: true,
  user: true,
  resources: { cpus: true, memoryMiB: true, pids: true },
  readOnlyPaths: true,
  hostPorts: true,
  publish: true,
};

const backend = (capabilities?: BackendCapabilities) => ({
  name: "vm",
  ...(capabilities && { capabilities }),
});

describe("capabilityGaps", () => {
  it("finds nothing when the backend declares everything the spec asks for", () => {
    const asked = spec({
      secrets: { ANTHROPIC_API_KEY: "sk-real" },
      user: { uid: 1000, gid: 1000 },
      resources: { cpus: 2, memoryMiB: 1024, pids: 100 },
      readOnlyPaths: ["/work/project/.git/config"],
      network: { mode: "allowlist", allow: [], hostPorts: [5432], publish: [{ port: 3000, hostPort: 3000 }] },
    });
    expect(capabilityGaps(backend(everything), asked)).toEqual({ warnings: [] });
  });

  it("refuses a credential the backend would put inside the bottle, unless passthrough says so (and warns then)", () => {
    const withKey = spec({ secrets: { ANTHROPIC_API_KEY: "sk-real" }, network: { mode: "open" } });
    const refused = capabilityGaps(backend({ egress: true }), withKey).refusal;
    expect(BottleError.is(refused) && refused.code).toBe("INVALID_CONFIG");
    expect(refused?.message).toMatch(/cannot keep your credential outside the bottle/);
    expect(refused?.hint).toMatch(/credentials\.passthrough/);
    expect(refused?.message).not.toContain("sk-real");

    const passthrough = capabilityGaps(backend({}), { ...withKey, passthroughCredentials: true });
    expect(passthrough.refusal).toBeUndefined();
    expect(passthrough.warnings).toEqual([passthroughWarning]);
    // Even a backend that could keep it outside warns when the user hands it in.
    expect(
      capabilityGaps(backend(everything), { ...withKey, passthroughCredentials: true }).warnings,
    ).toEqual([passthroughWarning]);
  });

  it("refuses an allow-list the backend cannot hold, but runs an open network", () => {
    expect(capabilityGaps(backend({}), spec()).refusal?.message).toMatch(
      /cannot hold the network allow-list/,
    );
    expect(capabilityGaps(backend({}), spec({ network: { mode: "none" } })).refusal).toBeDefined();
    expect(capabilityGaps(backend({}), spec({ network: { mode: "open" } }))).toEqual({ warnings: [] });
  });

  it("refuses host ports and published ports the backend would silently leave out", () => {
    const ports = spec({ network: { mode: "allowlist", allow: [], hostPorts: [5432] } });
    expect(capabilityGaps(backend({ egress: true, denialLog: true }), ports).refusal?.message).toMatch(
      /--allow-host-port/,
    );
    const published = spec({
      network: { mode: "allowlist", allow: [], publish: [{ port: 3000, hostPort: 3000 }] },
    });
    expect(capabilityGaps(backend({ egress: true, denialLog: true }), published).refusal?.message).toMatch(
      /--publish/,
    );
  });

  it("warns, without refusing, about a missing denial log, user mapping, limits and read-only paths", () => {
    const gaps = capabilityGaps(
      backend({ credentials: true, egress: true, resources: { cpus: true } }),
      spec({
        user: { uid: 1000, gid: 1000 },
        resources: { cpus: 2, memoryMiB: 512, pids: 64 },
        readOnlyPaths: ["/work/project/.git/config"],
      }),
    );
    expect(gaps.refusal).toBeUndefined();
    expect(gaps.warnings).toHaveLength(4);
    expect(gaps.warnings[0]).toMatch(/cannot say what it refused/);
    expect(gaps.warnings[1]).toMatch(/cannot run the agent as uid 1000/);
    expect(gaps.warnings[2]).toMatch(/resources\.memoryMiB, resources\.pids/);
    expect(gaps.warnings[3]).toMatch(/read-only/);
  });
});
