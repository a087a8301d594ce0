import { describe, expect, it } from "vitest";
import { BottleError } from "./errors.js";
import {
  isLoopbackHost,
  networkPolicySchema,
  parseAllowEntry,
  parsePublishEntry,
  resolveNetworkAccess,
} from "./network-policy.js";
import { networkPresets } from "./network-presets.js";

describe("parseAllowEntry", () => {
  it.each([
    ["api.anthropic.com", { kind: "host", host: "api.anthropic.com" }],
    ["API.Anthropic.com", { kind: "host", host: "api.anthropic.com" }],
    ["*.npmjs.org", { kind: "suffix", domain: "npmjs.org" }],
    ["10.0.0.0/8", { kind: "cidr", address: "10.0.0.0", prefix: 8, family: 4 }],
    ["192.168.1.7", { kind: "cidr", address: "192.168.1.7", prefix: 32, family: 4 }],
    ["fd00::/8", { kind: "cidr", address: "fd00::", prefix: 8, family: 6 }],
  ])("%s", (entry, rule) => {
    expect(parseAllowEntry(entry)).toEqual(rule);
  });

  it.each([
    "",
    "*",
    "*.",
    "http://example.com",
    "exa mple.com",
    "-bad.com",
    "10.0.0.0/33",
    "10.0.0.0/x",
    "a..b",
  ])("rejects %j", (entry) => {
    expect(parseAllowEntry(entry)).toBeUndefined();
  });
});

describe("networkPolicySchema", () => {
  it("defaults to an empty allow-list", () => {
    expect(networkPolicySchema.parse({})).toEqual({ mode: "allowlist", allow: [] });
  });

  it("names the entry that is wrong", () => {
    const result = networkPolicySchema.safeParse({ allow: ["ok.com", "not a host"] });
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.path).toEqual(["allow", 1]);
  });
});

describe("network presets", () => {
  it("are made of valid allow-list entries", () => {
    for (const [name, hosts] of Object.entries(networkPresets)) {
      for (const host of hosts) expect(parseAllowEntry(host), `${name}: ${host}`).toBeDefined();
    }
  });

  it("are accepted by name and refused when unknown", () => {
    expect(networkPolicySchema.parse({ presets: ["npm", "github"] }).presets).toEqual(["npm", "github"]);
    const result = networkPolicySchema.safeParse({ presets: ["npm", "nmp"] });
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.path).toEqual(["presets", 1]);
  });
});

describe("resolveNetworkAccess", () => {
  it("puts presets, allow and per-run extras together, normalised, without duplicates", () => {
    const access = resolveNetworkAccess(
      {
        mode: "allowlist",
        presets: ["pypi"],
        allow: ["PyPI.org", "*.Example.com", "10.0.0.0/8", "192.0.2.7"],
      },
      ["internal.example.net", "192.0.2.7", "fd00::/8"],
    );
    expect(access).toEqual({
      mode: "allowlist",
      entries: [
        "pypi.org",
        "files.pythonhosted.org",
        "*.example.com",
        "10.0.0.0/8",
        "192.0.2.7/32",
        "internal.example.net",
        "fd00::/8",
      ],
      hosts: ["pypi.org", "files.pythonhosted.org", "internal.example.net"],
      domains: ["example.com"],
      cidrs: ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"],
    });
  });

  it("is empty for an allowlist with nothing in it: the API goes through the forwarder", () => {
    expect(resolveNetworkAccess({})).toEqual({
      mode: "allowlist",
      entries: [],
      hosts: [],
      domains: [],
      cidrs: [],
    });
  });

  it("has no list for open and none", () => {
    expect(resolveNetworkAccess({ mode: "open", allow: ["a.com"] })).toEqual({ mode: "open" });
    expect(resolveNetworkAccess({ mode: "none", allow: ["a.com"] })).toEqual({ mode: "none" });
  });

  it("refuses an invalid extra", () => {
    expect(() => resolveNetworkAccess({}, ["not a host"])).toThrow(BottleError);
  });
});

describe("parsePublishEntry", () => {
  it("reads PORT and PORT:HOSTPORT, and nothing else", () => {
    expect(parsePublishEntry(3000)).toEqual({ port: 3000, hostPort: 3000 });
    expect(parsePublishEntry("3000")).toEqual({ port: 3000, hostPort: 3000 });
    expect(parsePublishEntry("3000:18000")).toEqual({ port: 3000, hostPort: 18000 });
    for (const bad of ["0", "70000", "3000:", ":3000", "a:1", "127.0.0.1:3000:3000", "3000:0", 1.5])
      expect(parsePublishEntry(bad), String(bad)).toBeUndefined();
  });
});

describe("isLoopbackHost", () => {
  it("knows this machine's loopback as a URL writes it", () => {
    for (const host of [
      "localhost",
      "LOCALHOST",
      "api.localhost",
      "127.0.0.1",
      "127.1.2.3",
      "::1",
      "[::1]",
    ]) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
  });

  it("takes nothing else for it", () => {
    for (const host of [
      "api.anthropic.com",
      "127.example.com",
      "10.0.0.1",
      "[::2]",
      "localhost.example.com",
    ]) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
  });
});
