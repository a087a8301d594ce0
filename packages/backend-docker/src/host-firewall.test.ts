import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { bottleNetworkOf } from "./docker-bottles.js";
import {
  applyScript,
  bridgeOf,
  type FirewallState,
  type GuardTarget,
  guardChain,
  hostServicePorts,
  ipv4GuardRules,
  ipv6GuardRules,
  parseFirewallState,
  removeScript,
  staleChains,
  unguardedWarning,
} from "./host-firewall.js";

const networkId = "52afaabf10597a8bbfca6e2edc4b7dda5d7ba55139628e381d5d52559925005b";
const chain = "CLAUDE-BOTTLE-52afaabf1059";
const target: GuardTarget = {
  chain,
  bridge: "br-52afaabf1059",
  gateway: "172.28.0.1",
  ports: [41001, 41002],
};

describe("names", () => {
  it("names the chain after the network id's first 12 hex digits, within iptables' 28 characters", () => {
    expect(guardChain(networkId)).toBe(chain);
    expect(guardChain(networkId).length).toBeLessThanOrEqual(28);
    expect(() => guardChain("claude-bottle-net")).toThrow(/not a Docker network id/);
    expect(() => guardChain("52afaabf10")).toThrow(/not a Docker network id/);
  });

  it("finds the bridge Docker made: br-<12 hex> unless the network was created with a bridge name", () => {
    expect(bridgeOf(networkId, undefined)).toBe("br-52afaabf1059");
    expect(bridgeOf(networkId, "")).toBe("br-52afaabf1059");
    expect(bridgeOf(networkId, "docker1")).toBe("docker1");
    expect(() => bridgeOf(networkId, "br0; reboot")).toThrow(/not an interface name/);
    expect(() => bridgeOf(networkId, "a-name-longer-than-15")).toThrow(/not an interface name/);
  });

  it("reads the id and options `docker network inspect` gives, for a network with options and one without", () => {
    expect(bottleNetworkOf({ Id: networkId, Options: {} })).toMatchObject({ id: networkId, options: {} });
    expect(bottleNetworkOf({ Id: networkId, Options: null })).toMatchObject({ id: networkId, options: {} });
    const docker0 = bottleNetworkOf({
      Id: "12629e60d376",
      Options: {
        "com.docker.network.bridge.default_bridge": "true",
        "com.docker.network.bridge.name": "docker0",
      },
    });
    expect(bridgeOf(docker0.id, docker0.options["com.docker.network.bridge.name"])).toBe("docker0");
  });

  it("reads the network's IPv4 gateway, skipping IPv6 ones", () => {
    const ipam = {
      Config: [
        { Subnet: "fd00::/64", Gateway: "fd00::1" },
        { Subnet: "172.28.0.0/16", Gateway: "172.28.0.1" },
      ],
    };
    expect(bottleNetworkOf({ Id: networkId, IPAM: ipam }).gateway).toBe("172.28.0.1");
    expect(bottleNetworkOf({ Id: networkId, IPAM: { Config: [] } }).gateway).toBeUndefined();
  });

  it("takes the ports from the host services' URLs", () => {
    expect(
      hostServicePorts({ apiUrl: "http://172.28.0.1:41001", proxyUrl: "http://172.28.0.1:41002" }),
    ).toEqual([41001, 41002]);
    expect(hostServicePorts({ apiUrl: "http://172.28.0.1:41001", proxyUrl: undefined })).toEqual([41001]);
  });
});

describe("the rules", () => {
  it("IPv4: replies pass, TCP to the gateway on each service port passes, the rest is rejected; jump first in INPUT", () => {
    expect(ipv4GuardRules(target)).toBe(
      [
        "*filter",
        ":CLAUDE-BOTTLE-52afaabf1059 - [0:0]",
        "-A CLAUDE-BOTTLE-52afaabf1059 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A CLAUDE-BOTTLE-52afaabf1059 -d 172.28.0.1/32 -p tcp -m tcp --dport 41001 -j ACCEPT",
        "-A CLAUDE-BOTTLE-52afaabf1059 -d 172.28.0.1/32 -p tcp -m tcp --dport 41002 -j ACCEPT",
        "-A CLAUDE-BOTTLE-52afaabf1059 -p tcp -j REJECT --reject-with tcp-reset",
        "-A CLAUDE-BOTTLE-52afaabf1059 -j REJECT --reject-with icmp-port-unreachable",
        "-I INPUT 1 -i br-52afaabf1059 -j CLAUDE-BOTTLE-52afaabf1059",
        "COMMIT",
        "",
      ].join("\n"),
    );
  });

  it("IPv6: nothing new passes", () => {
    expect(ipv6GuardRules(target)).toBe(
      [
        "*filter",
        ":CLAUDE-BOTTLE-52afaabf1059 - [0:0]",
        "-A CLAUDE-BOTTLE-52afaabf1059 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A CLAUDE-BOTTLE-52afaabf1059 -p tcp -j REJECT --reject-with tcp-reset",
        "-A CLAUDE-BOTTLE-52afaabf1059 -j REJECT --reject-with icmp6-port-unreachable",
        "-I INPUT 1 -i br-52afaabf1059 -j CLAUDE-BOTTLE-52afaabf1059",
        "COMMIT",
        "",
      ].join("\n"),
    );
  });

  it("refuses anything that is not a plain address, port, interface or chain of ours", () => {
    for (const bad of [
      { gateway: "172.28.0.1; reboot" },
      { gateway: "172.28.0.256" },
      { gateway: "fe80::1" },
      { bridge: "br-x -j ACCEPT" },
      { ports: [] },
      { ports: [0] },
      { ports: [65_536] },
      { ports: [80.5] },
      { chain: "INPUT" },
      { chain: "CLAUDE-BOTTLE-xyz" },
    ]) {
      expect(() => ipv4GuardRules({ ...target, ...bad }), JSON.stringify(bad)).toThrow(
        /invalid firewall target/,
      );
      expect(() => ipv6GuardRules({ ...target, ...bad }), JSON.stringify(bad)).toThrow(
        /invalid firewall target/,
      );
    }
  });
});

describe("the scripts", () => {
  it("apply: both rule sets through iptables-restore --noflush, IPv4 must succeed, then the state", () => {
    const script = applyScript(target);
    expect(script).toContain(
      `iptables-restore --noflush --wait=10 <<'CLAUDE_BOTTLE_RULES' || exit 1\n${ipv4GuardRules(target)}CLAUDE_BOTTLE_RULES\n`,
    );
    expect(script).toContain(
      `ip6tables-restore --noflush --wait=10 <<'CLAUDE_BOTTLE_RULES' || true\n${ipv6GuardRules(target)}CLAUDE_BOTTLE_RULES\n`,
    );
    expect(script.indexOf("iptables-restore")).toBeLessThan(script.indexOf("iptables-save -t filter"));
  });

  it("stops, having changed nothing, when iptables is not installed", async () => {
    // Real sh with a PATH that holds no iptables: the script's first check is all that runs.
    const result = await execa("/bin/sh", ["-c", applyScript(target)], {
      env: { PATH: "/nonexistent" },
      extendEnv: false,
      reject: false,
    });
    expect(result.exitCode).toBe(101);
    expect(result.stderr).toBe("iptables is not installed");
    expect(result.stdout).toBe("");
  });

  it("remove: each jump, then flush and delete, each allowed to fail; unsafe or foreign names are left out", () => {
    const script = removeScript([
      { family: "ipv4", chain, jumps: [["-i", "br-52afaabf1059", "-j", chain]] },
      { family: "ipv6", chain, jumps: [["-i", "br-52afaabf1059", "-j", chain]] },
      { family: "ipv4", chain: "CLAUDE-BOTTLE-0123456789ab", jumps: [["-i", "$(reboot)", "-j", chain]] },
      { family: "ipv4", chain: "DOCKER-USER", jumps: [["-j", "DOCKER-USER"]] },
    ]);
    const lines = script.split("\n");
    expect(lines).toEqual(
      expect.arrayContaining([
        `iptables -w 10 -D INPUT -i br-52afaabf1059 -j ${chain} || true`,
        `iptables -w 10 -F ${chain} || true`,
        `iptables -w 10 -X ${chain} || true`,
        `ip6tables -w 10 -D INPUT -i br-52afaabf1059 -j ${chain} || true`,
        `ip6tables -w 10 -F ${chain} || true`,
        `ip6tables -w 10 -X ${chain} || true`,
        "iptables -w 10 -F CLAUDE-BOTTLE-0123456789ab || true",
        "iptables -w 10 -X CLAUDE-BOTTLE-0123456789ab || true",
      ]),
    );
    expect(script).not.toContain("reboot");
    expect(script).not.toContain("DOCKER-USER");
    expect(lines.indexOf(`iptables -w 10 -D INPUT -i br-52afaabf1059 -j ${chain} || true`)).toBeLessThan(
      lines.indexOf(`iptables -w 10 -X ${chain} || true`),
    );
  });
});

/** What the scripts print, as iptables-save 1.8.9 (nf_tables) printed it on a Docker host. */
const output = `@@claude-bottle ipv4
# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 04:17:05 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:CLAUDE-BOTTLE-0123456789ab - [0:0]
:CLAUDE-BOTTLE-52afaabf1059 - [0:0]
:CLAUDE-BOTTLE-aaaaaaaaaaaa - [0:0]
:CLAUDE-BOTTLE-bbbbbbbbbbbb - [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -i br-52afaabf1059 -j CLAUDE-BOTTLE-52afaabf1059
-A INPUT -i br-0123456789ab -j CLAUDE-BOTTLE-0123456789ab
-A INPUT -i br-aaaaaaaaaaaa -j CLAUDE-BOTTLE-aaaaaaaaaaaa
-A INPUT -i lo -j ACCEPT
-A FORWARD -j DOCKER-USER
-A CLAUDE-BOTTLE-52afaabf1059 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A CLAUDE-BOTTLE-52afaabf1059 -d 172.28.0.1/32 -p tcp -m tcp --dport 41001 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
# Completed on Thu Nov 26 04:17:05 2026
@@claude-bottle ipv6
# Generated by ip6tables-save v1.8.9 (nf_tables) on Thu Nov 26 04:17:05 2026
*filter
:INPUT ACCEPT [0:0]
:CLAUDE-BOTTLE-52afaabf1059 - [0:0]
:CLAUDE-BOTTLE-0123456789ab - [0:0]
-A INPUT -i br-52afaabf1059 -j CLAUDE-BOTTLE-52afaabf1059
-A INPUT -i br-0123456789ab -j CLAUDE-BOTTLE-0123456789ab
COMMIT
@@claude-bottle interfaces
br-52afaabf1059
br-aaaaaaaaaaaa
docker0
eth0
lo
`;

describe("reading the state back", () => {
  const state: FirewallState = parseFirewallState(output);

  it("finds our chains in each family, with the INPUT rules that jump to them, and the interfaces", () => {
    expect(state.ipv4).toEqual([
      {
        chain: "CLAUDE-BOTTLE-0123456789ab",
        jumps: [["-i", "br-0123456789ab", "-j", "CLAUDE-BOTTLE-0123456789ab"]],
      },
      { chain, jumps: [["-i", "br-52afaabf1059", "-j", chain]] },
      {
        chain: "CLAUDE-BOTTLE-aaaaaaaaaaaa",
        jumps: [["-i", "br-aaaaaaaaaaaa", "-j", "CLAUDE-BOTTLE-aaaaaaaaaaaa"]],
      },
      { chain: "CLAUDE-BOTTLE-bbbbbbbbbbbb", jumps: [] },
    ]);
    expect(state.ipv6.map((found) => found.chain)).toEqual([chain, "CLAUDE-BOTTLE-0123456789ab"]);
    expect(state.interfaces).toEqual(["br-52afaabf1059", "br-aaaaaaaaaaaa", "docker0", "eth0", "lo"]);
  });

  it("calls a chain stale when its bridge is gone; a live bottle's chain and our own are kept", () => {
    expect(staleChains(state, chain)).toEqual([
      {
        family: "ipv4",
        chain: "CLAUDE-BOTTLE-0123456789ab",
        jumps: [["-i", "br-0123456789ab", "-j", "CLAUDE-BOTTLE-0123456789ab"]],
      },
      // no jump left: its id names the bridge
      { family: "ipv4", chain: "CLAUDE-BOTTLE-bbbbbbbbbbbb", jumps: [] },
      {
        family: "ipv6",
        chain: "CLAUDE-BOTTLE-0123456789ab",
        jumps: [["-i", "br-0123456789ab", "-j", "CLAUDE-BOTTLE-0123456789ab"]],
      },
    ]);
    // our own chain is never swept, even if its bridge were missing
    expect(staleChains({ ...state, interfaces: [] }, chain).map((found) => found.chain)).not.toContain(chain);
  });

  it("sees nothing of ours in a table without our chains", () => {
    expect(parseFirewallState("@@claude-bottle ipv4\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")).toEqual({
      ipv4: [],
      ipv6: [],
      interfaces: [],
    });
  });
});

it("the warning says the bottle is unguarded and why each way failed", () => {
  const warning = unguardedWarning([
    "iptables on this machine: claude-bottle is not running as root",
    "a helper container: the image has no iptables (iptables is not installed)",
  ]);
  expect(warning).toMatch(/not fenced off from your machine/);
  expect(warning).toContain(
    "claude-bottle is not running as root; a helper container: the image has no iptables",
  );
  expect(unguardedWarning([])).toContain("no way of adding them is enabled");
});
