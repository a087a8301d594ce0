import { describe, expect, it } from "vitest";
import {
  type MachineCreateOptions,
  machineCreateArgs,
  machineExecArgs,
  smolvmFailure,
} from "./smolvm-cli.js";

describe("machineCreateArgs", () => {
  const base: MachineCreateOptions = {
    from: "/c/x.smolmachine.smolmachine",
    mounts: [],
    network: { kind: "none" },
  };

  it("names the machine, boots the sidecar and attaches each mount, read-only ones with :ro", () => {
    expect(
      machineCreateArgs("bottle-1", {
        ...base,
        mounts: [
          { source: "/w", target: "/w", readOnly: false },
          { source: "/srv", target: "/srv", readOnly: true },
        ],
      }),
    ).toEqual([
      "machine",
      "create",
      "--name",
      "bottle-1",
      "--from",
      "/c/x.smolmachine.smolmachine",
      "-v",
      "/w:/w",
      "-v",
      "/srv:/srv:ro",
    ]);
  });

  it("maps the network: none → nothing, open → --net, allow-list → --allow-host/--allow-cidr only", () => {
    expect(machineCreateArgs("m", base)).not.toContain("--net");
    expect(machineCreateArgs("m", { ...base, network: { kind: "open" } })).toContain("--net");
    const allow = machineCreateArgs("m", {
      ...base,
      network: { kind: "allowlist", hosts: ["a.example", "b.example"], cidrs: ["10.0.0.0/8"] },
    });
    expect(allow.slice(6)).toEqual([
      "--allow-host",
      "a.example",
      "--allow-host",
      "b.example",
      "--allow-cidr",
      "10.0.0.0/8",
    ]);
  });

  it("binds each credential by name to its hosts: the variable's name, never its value", () => {
    expect(
      machineCreateArgs("m", {
        ...base,
        credentials: [
          { name: "anthropic-api-key", envVar: "ANTHROPIC_API_KEY", hosts: ["api.anthropic.com"] },
        ],
      }).slice(6),
    ).toEqual(["--credential", "anthropic-api-key=ANTHROPIC_API_KEY@api.anthropic.com"]);
  });

  it("rounds fractional CPUs up and passes memory in MiB", () => {
    expect(machineCreateArgs("m", { ...base, cpus: 1.5, memoryMiB: 1024 }).slice(6)).toEqual([
      "--cpus",
      "2",
      "--mem",
      "1024",
    ]);
  });
});

describe("machineExecArgs", () => {
  const options = {
    command: ["claude", "-p", "hi"],
    workdir: "/w",
    env: { HOME: "/home/claude", ANTHROPIC_API_KEY: "plain-would-be-wrong" },
    secrets: { ANTHROPIC_API_KEY: "sk-ant-secret" },
    tty: false,
    stdin: false,
  };

  it("streams with -i, passes secrets by name only, and ends with -- and the command", () => {
    const args = machineExecArgs("m", options);
    expect(args).toEqual([
      "machine",
      "exec",
      "--name",
      "m",
      "-i",
      "-w",
      "/w",
      "-e",
      "HOME=/home/claude",
      "-e",
      "ANTHROPIC_API_KEY",
      "--",
      "claude",
      "-p",
      "hi",
    ]);
    expect(args.join(" ")).not.toContain("sk-ant-secret");
    expect(args).not.toContain("-n");
  });

  it("never passes a bound credential's variable with -e (it would replace the guest's placeholder)", () => {
    const args = machineExecArgs("m", {
      ...options,
      secrets: {},
      hostEnv: { ANTHROPIC_API_KEY: "sk-ant-secret" },
    });
    expect(args.filter((arg) => arg.startsWith("ANTHROPIC_API_KEY"))).toEqual([]);
    expect(args.join(" ")).not.toContain("sk-ant-secret");
  });

  it("adds -t for a terminal", () => {
    expect(machineExecArgs("m", { ...options, tty: true }).slice(4, 6)).toEqual(["-i", "-t"]);
  });
});

describe("smolvmFailure", () => {
  it("is smolvm's message for exit 1 ending in an Error: line, and undefined for the guest's own exits", () => {
    expect(smolvmFailure(1, "Error: machine 'm' is not running\n", false)).toBe(
      "Error: machine 'm' is not running",
    );
    expect(smolvmFailure(1, "tests failed\n", false)).toBeUndefined();
    expect(smolvmFailure(2, "Error: usage\n", false)).toBeUndefined();
    expect(smolvmFailure(0, "", false)).toBeUndefined();
  });

  it("without a terminal, only counts an Error: last line (a guest may print Error: before its trace)", () => {
    expect(smolvmFailure(1, "Error: boom\n    at main (/app/x.js:1:1)\n", false)).toBeUndefined();
    // With a terminal the guest's stderr goes to the PTY, so any Error: line on stderr is smolvm's.
    expect(smolvmFailure(1, "Error: connection to the agent lost\nbye\n", true)).toBe(
      "Error: connection to the agent lost",
    );
  });
});
