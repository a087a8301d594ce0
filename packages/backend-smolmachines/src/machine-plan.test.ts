import { type RunSpecInput, runSpecSchema } from "@claude-bottle/core";
import { describe, expect, it } from "vitest";
import { apiHostOf, machineNetwork, planMachine } from "./machine-plan.js";

const sidecar = "/cache/smolmachines/0123456789abcdef.smolmachine.smolmachine";
const spec = (overrides: Partial<RunSpecInput> = {}) =>
  runSpecSchema.parse({
    workspace: "/home/ada/project",
    home: "/data/claude-bottle/homes/project",
    command: ["claude", "--dangerously-skip-permissions"],
    name: "claude-bottle-project",
    ...overrides,
  });

describe("machineNetwork", () => {
  it("maps none to no network and open to --net", () => {
    expect(machineNetwork({ mode: "none", allow: ["example.com"] }, "api.anthropic.com")).toEqual({
      kind: "none",
    });
    expect(machineNetwork({ mode: "open", allow: [] }, "api.anthropic.com")).toEqual({ kind: "open" });
  });

  it("maps an allow-list and its presets to hosts and CIDR blocks, wildcards to their domain, without duplicates", () => {
    expect(
      machineNetwork(
        {
          mode: "allowlist",
          allow: ["api.anthropic.com", "*.npmjs.org", "npmjs.org", "10.1.2.3", "192.168.0.0/16", "::1"],
          presets: ["pypi"],
        },
        "api.anthropic.com",
      ),
    ).toEqual({
      kind: "allowlist",
      hosts: ["pypi.org", "files.pythonhosted.org", "api.anthropic.com", "npmjs.org"],
      cidrs: ["10.1.2.3/32", "192.168.0.0/16", "::1/128"],
    });
  });

  it("always lets the VM reach the API's host, since no forwarder runs for a VM", () => {
    expect(machineNetwork({ mode: "allowlist", allow: [] }, "api.anthropic.com")).toEqual({
      kind: "allowlist",
      hosts: ["api.anthropic.com"],
      cidrs: [],
    });
    expect(apiHostOf(spec({ anthropicBaseUrl: "http://127.0.0.1:8080/v1" }))).toBe("127.0.0.1");
    expect(planMachine(spec({ anthropicBaseUrl: "http://127.0.0.1:8080" }), sidecar).create.network).toEqual({
      kind: "allowlist",
      hosts: [],
      cidrs: ["127.0.0.1/32"],
    });
    expect(apiHostOf(spec())).toBe("api.anthropic.com");
  });
});

describe("planMachine", () => {
  it("mounts the workspace at its own path, the home at homeTarget, then the extra mounts", () => {
    const plan = planMachine(
      spec({ mounts: [{ source: "/srv/data", target: "/data", readOnly: true }] }),
      sidecar,
    );
    expect(plan.create.from).toBe(sidecar);
    expect(plan.create.mounts).toEqual([
      { source: "/home/ada/project", target: "/home/ada/project", readOnly: false },
      { source: "/data/claude-bottle/homes/project", target: "/home/claude", readOnly: false },
      { source: "/srv/data", target: "/data", readOnly: true },
    ]);
    expect(plan.exec.workdir).toBe("/home/ada/project");
    expect(plan.exec.command).toEqual(["claude", "--dangerously-skip-permissions"]);
  });

  it("refuses more than 4 mounts before anything boots, saying how many and what to drop", () => {
    const mounts = ["/a", "/b", "/c"].map((source) => ({ source, target: source }));
    expect(() => planMachine(spec({ mounts: mounts.slice(0, 2) }), sidecar)).not.toThrow();
    expect(() => planMachine(spec({ mounts }), sidecar)).toThrow(
      expect.objectContaining({
        code: "INVALID_CONFIG",
        message: expect.stringMatching(
          /at most 4 folders.*needs 5: the workspace, the agent's home and 3 more/,
        ),
        hint: expect.stringContaining("remove 1 of the extra mounts"),
      }),
    );
  });

  it("sets HOME, IS_SANDBOX and the API endpoint, lets spec.env override, and keeps secrets apart", () => {
    const plan = planMachine(
      spec({
        env: { TERM: "xterm", HOME: "/root" },
        secrets: { ANTHROPIC_API_KEY: "sk-secret" },
        anthropicBaseUrl: "https://llm.example.com/v1",
        homeTarget: "/home/agent",
      }),
      sidecar,
    );
    expect(plan.exec.env).toEqual({
      HOME: "/root",
      IS_SANDBOX: "1",
      ANTHROPIC_BASE_URL: "https://llm.example.com/v1",
      TERM: "xterm",
    });
    expect(plan.exec.secrets).toEqual({ ANTHROPIC_API_KEY: "sk-secret" });
  });

  it("takes CPUs and memory from the resources and the terminal mode from the spec", () => {
    const plan = planMachine(spec({ resources: { cpus: 1.5, memoryMiB: 2048 }, tty: true }), sidecar);
    expect(plan.create).toMatchObject({ cpus: 1.5, memoryMiB: 2048 });
    expect(plan.exec).toMatchObject({ tty: true, stdin: false });
    const bare = planMachine(spec(), sidecar);
    expect(bare.create).not.toHaveProperty("cpus");
    expect(bare.create).not.toHaveProperty("memoryMiB");
  });
});
