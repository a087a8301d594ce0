import { describe, expect, it } from "vitest";
import { networkPolicySchema, parseAllowEntry } from "./network-policy.js";

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
