import { type RunSpecInput, runSpecSchema } from "@claude-bottle/core";
import { describe, expect, it } from "vitest";
import {
  apiHostOf,
  credentialBindingVersion,
  keepsCredentialOutside,
  machineNetwork,
  planMachine as plan,
} from "./machine-plan.js";
import { machineCreateArgs } from "./smolvm-cli.js";

const planMachine = (s: Parameters<typeof plan>[0], sidecar: string, smolvmVersion = "1.22.2") =>
  plan(s, sidecar, { smolvmVersion });

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
  it("maps none to the API's host alone (as Docker's none leaves only the API) and open to --net", () => {
    expect(machineNetwork({ mode: "none", allow: ["example.com"] }, "api.anthropic.com")).toEqual({
      kind: "allowlist",
      hosts: ["api.anthropic.com"],
      cidrs: [],
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

  it("always lets the VM reach the API's host; a loopback API only through smolvm's host gateway", () => {
    expect(machineNetwork({ mode: "allowlist", allow: [] }, "api.anthropic.com")).toEqual({
      kind: "allowlist",
      hosts: ["api.anthropic.com"],
      cidrs: [],
    });
    expect(apiHostOf(spec({ anthropicBaseUrl: "http://127.0.0.1:8080/v1" }))).toBe("127.0.0.1");
    const loopback = planMachine(spec({ anthropicBaseUrl: "http://127.0.0.1:8080" }), sidecar);
    expect(loopback.create.network).toEqual({ kind: "allowlist", hosts: [], cidrs: ["100.96.0.1/32"] });
    expect(loopback.exec.env.ANTHROPIC_BASE_URL).toBe("http://100.96.0.1:8080");
    expect(loopback.warnings.join("\n")).toMatch(/every other service listening on this machine's loopback/);
    const open = planMachine(
      spec({ anthropicBaseUrl: "http://localhost:8080/v1", network: { mode: "open", allow: [] } }),
      sidecar,
    );
    // --net alone would pick TSI, which has no gateway; a policy admitting everything forces virtio-net.
    expect(open.create.network).toEqual({ kind: "allowlist", hosts: [], cidrs: ["0.0.0.0/0", "::/0"] });
    expect(open.exec.env.ANTHROPIC_BASE_URL).toBe("http://100.96.0.1:8080/v1");
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
    expect(plan.exec.command.slice(-2)).toEqual(["claude", "--dangerously-skip-permissions"]);
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

  it("publishes --publish ports with smolvm's -p, counted with the mounts toward the limit of 4", () => {
    const plan = planMachine(
      spec({ network: { mode: "allowlist", allow: [], publish: [{ port: 3000, hostPort: 8080 }] } }),
      sidecar,
    );
    expect(plan.create.ports).toEqual([{ port: 3000, hostPort: 8080 }]);
    expect(machineCreateArgs("m", plan.create)).toEqual(expect.arrayContaining(["-p", "8080:3000"]));
    const mounts = ["/a", "/b"].map((source) => ({ source, target: source }));
    expect(() =>
      planMachine(
        spec({
          mounts,
          network: { mode: "allowlist", allow: [], publish: [{ port: 3000, hostPort: 3000 }] },
        }),
        sidecar,
      ),
    ).toThrow(
      expect.objectContaining({
        code: "INVALID_CONFIG",
        message: expect.stringMatching(
          /at most 4 folders and published ports.*needs 5.*plus 1 published port/,
        ),
        hint: expect.stringContaining("--publish"),
      }),
    );
  });

  it("refuses --allow-host-port: smolvm's host gateway would open every loopback service, not one", () => {
    expect(() =>
      planMachine(spec({ network: { mode: "allowlist", allow: [], hostPorts: [5432] } }), sidecar),
    ).toThrow(
      expect.objectContaining({
        code: "INVALID_CONFIG",
        message: expect.stringContaining(
          "--allow-host-port (network.hostPorts) is not available on smolmachines",
        ),
      }),
    );
  });

  it("sets HOME and the API endpoint, lets spec.env override, and binds the credential instead of passing it", () => {
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
      ANTHROPIC_BASE_URL: "https://llm.example.com/v1",
      // Claude Code must trust what smolvm's interceptor presents for the bound host.
      NODE_EXTRA_CA_CERTS: "/run/smolvm/ca-bundle.pem",
      SSL_CERT_FILE: "/run/smolvm/ca-bundle.pem",
      TERM: "xterm",
    });
    expect(plan.exec.secrets).toEqual({});
    expect(plan.create.credentials).toEqual([
      { name: "anthropic-api-key", envVar: "ANTHROPIC_API_KEY", hosts: ["llm.example.com"] },
    ]);
    expect(plan.hostEnv).toEqual({ ANTHROPIC_API_KEY: "sk-secret" });
  });

  it("takes CPUs and memory from the resources and the terminal mode from the spec", () => {
    const plan = planMachine(spec({ resources: { cpus: 1.5, memoryMiB: 2048 }, tty: true }), sidecar);
    expect(plan.create).toMatchObject({ cpus: 1.5, memoryMiB: 2048 });
    expect(plan.exec).toMatchObject({ tty: true, stdin: false });
    const bare = planMachine(spec(), sidecar);
    expect(bare.create).not.toHaveProperty("cpus");
    expect(bare.create).not.toHaveProperty("memoryMiB");
  });

  it("drops root before the agent starts: setpriv to spec.user, or to the image's claude user", () => {
    const mine = planMachine(spec({ user: { uid: 1000, gid: 100 } }), sidecar);
    expect(mine.exec.command).toEqual([
      "setpriv",
      "--reuid=1000",
      "--regid=100",
      "--clear-groups",
      "--no-new-privs",
      "--",
      "claude",
      "--dangerously-skip-permissions",
    ]);
    expect(mine.exec.env).not.toHaveProperty("IS_SANDBOX");
    expect(planMachine(spec(), sidecar).exec.command.slice(0, 3)).toEqual([
      "setpriv",
      "--reuid=10001",
      "--regid=10001",
    ]);
  });

  it("refuses root as the agent user", () => {
    expect(() => planMachine(spec({ user: { uid: 0, gid: 0 } }), sidecar)).toThrow(
      expect.objectContaining({
        code: "INVALID_CONFIG",
        message: expect.stringContaining("never runs as root"),
      }),
    );
  });
});

describe("credentials", () => {
  const key = { ANTHROPIC_API_KEY: "sk-secret" };

  it("binds exactly one credential, the one Docker's forwarder would pick, and passes other secrets as they are", () => {
    const plan = planMachine(
      spec({ secrets: { CLAUDE_CODE_OAUTH_TOKEN: "oat", ANTHROPIC_AUTH_TOKEN: "tok", GH_TOKEN: "gh" } }),
      sidecar,
    );
    expect(plan.create.credentials).toEqual([
      { name: "anthropic-auth-token", envVar: "ANTHROPIC_AUTH_TOKEN", hosts: ["api.anthropic.com"] },
    ]);
    expect(plan.hostEnv).toEqual({ ANTHROPIC_AUTH_TOKEN: "tok" });
    expect(plan.exec.secrets).toEqual({ GH_TOKEN: "gh" });
  });

  it(`keeps the key outside from smolvm ${credentialBindingVersion} on; refuses an older smolvm unless passthrough is set`, () => {
    expect(keepsCredentialOutside("1.22.2")).toBe(true);
    expect(keepsCredentialOutside("v1.30.0-rc.1")).toBe(true);
    expect(keepsCredentialOutside("1.18.2")).toBe(false);
    expect(() => planMachine(spec({ secrets: key }), sidecar, "1.18.2")).toThrow(
      expect.objectContaining({
        code: "BACKEND_UNAVAILABLE",
        message: expect.stringContaining("smolvm 1.18.2 cannot keep ANTHROPIC_API_KEY out of the VM"),
        hint: expect.stringContaining("credentials.passthrough"),
      }),
    );
    const passed = planMachine(spec({ secrets: key, passthroughCredentials: true }), sidecar, "1.9.2");
    expect(passed.exec.secrets).toEqual(key);
    expect(passed.create.credentials).toEqual([]);
    expect(passed.hostEnv).toEqual({});
    // No credential, nothing to keep out: any smolvm will do.
    expect(() => planMachine(spec(), sidecar, "1.9.2")).not.toThrow();
  });

  it("refuses an API a binding cannot reach (loopback, plain HTTP, another port, an IP), naming the way out", () => {
    for (const [url, why] of [
      ["http://127.0.0.1:8080", /loopback/],
      ["http://llm.example.com", /only into HTTPS requests/],
      ["https://llm.example.com:8443", /port 443 only/],
      ["https://203.0.113.7", /not an IP address/],
    ] as const) {
      expect(() => planMachine(spec({ secrets: key, anthropicBaseUrl: url }), sidecar)).toThrow(
        expect.objectContaining({
          code: "INVALID_CONFIG",
          message: expect.stringMatching(why),
          hint: expect.stringContaining("credentials.passthrough"),
        }),
      );
    }
    expect(() =>
      planMachine(spec({ secrets: key, anthropicBaseUrl: "https://llm.example.com:443/v1" }), sidecar),
    ).not.toThrow();
  });
});
