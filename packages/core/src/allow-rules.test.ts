import { describe, expect, it } from "vitest";
import { compileAllowList, hostLocalCheck, parseTargetHost } from "./allow-rules.js";

describe("parseTargetHost", () => {
  it.each([
    ["example.com", { kind: "name", name: "example.com" }],
    ["EXAMPLE.Com.", { kind: "name", name: "example.com" }],
    ["xn--bcher-kva.example", { kind: "name", name: "xn--bcher-kva.example" }],
    ["10.1.2.3", { kind: "ip", address: "10.1.2.3", family: 4 }],
    ["[::1]", { kind: "ip", address: "::1", family: 6 }],
    ["::1", { kind: "ip", address: "::1", family: 6 }],
    ["[::FFFF:127.0.0.1]", { kind: "ip", address: "::ffff:7f00:1", family: 6 }],
    ["[2001:DB8:0:0::1]", { kind: "ip", address: "2001:db8::1", family: 6 }],
  ])("%s", (host, target) => {
    expect(parseTargetHost(host)).toEqual(target);
  });

  it.each([
    "",
    ".",
    "example..com",
    "example.com..",
    "-example.com",
    "exa_mple.com",
    "exa mple.com",
    "allowed.test@evil.test",
    "127.1",
    "2130706433",
    "0x7f.1",
    "0x7f000001",
    "1.2.3.4.5",
    "010.0.0.1",
    "[10.0.0.1]",
    "[example.com]",
    "fe80::1%eth0",
    "[fe80::1%25eth0]",
    `${"a".repeat(64)}.com`,
    `${"a.".repeat(127)}com`,
  ])("rejects %j", (host) => {
    expect(parseTargetHost(host)).toBeUndefined();
  });
});

describe("compileAllowList", () => {
  const list = compileAllowList(["api.example.com", "*.pkg.example", "10.0.0.0/8", "192.0.2.7", "fd00::/8"]);

  it.each([
    ["api.example.com", "host"],
    ["a.pkg.example", "suffix"],
    ["a.b.c.pkg.example", "suffix"],
  ])("admits %s by its %s rule", (name, kind) => {
    expect(list.matchName(name)?.kind).toBe(kind);
  });

  it.each([
    "example.com",
    "x.api.example.com",
    "pkg.example",
    "xpkg.example",
    "pkg.example.evil.test",
    "evil.test",
  ])("does not admit %s", (name) => {
    expect(list.matchName(name)).toBeUndefined();
  });

  it.each(["10.0.0.1", "10.255.255.255", "192.0.2.7", "::ffff:10.1.1.1", "::ffff:a01:101", "fd12:3456::1"])(
    "covers the address %s",
    (address) => {
      expect(list.matchAddress(address)).toBe(true);
    },
  );

  it.each(["11.0.0.1", "192.0.2.8", "9.255.255.255", "::1", "fe80::1", "not-an-address", "10.0.0.1.example"])(
    "does not cover %s",
    (address) => {
      expect(list.matchAddress(address)).toBe(false);
    },
  );

  it("never matches an address by name rules, or a name by CIDR rules", () => {
    const names = compileAllowList(["10.0.0.1", "*.example"]);
    expect(names.matchName("10.0.0.1")).toBeUndefined();
    expect(names.matchAddress("a.example")).toBe(false);
    expect(names.hasAddressRules).toBe(true);
    expect(compileAllowList(["example.com"]).hasAddressRules).toBe(false);
  });

  it("refuses entries that are not allow-list entries", () => {
    expect(() => compileAllowList(["http://example.com"])).toThrow(/not an allow-list entry/);
  });
});

describe("hostLocalCheck", () => {
  const isHostLocal = hostLocalCheck({
    eth0: [
      {
        address: "172.18.0.1",
        netmask: "255.255.0.0",
        family: "IPv4",
        mac: "02:42:00:00:00:00",
        internal: false,
        cidr: "172.18.0.1/16",
      },
      {
        address: "fe80::42:1%eth0",
        netmask: "ffff:ffff:ffff:ffff::",
        family: "IPv6",
        mac: "02:42:00:00:00:00",
        internal: false,
        cidr: "fe80::42:1/64",
        scopeid: 2,
      },
    ],
  });

  it.each([
    "127.0.0.1",
    "127.9.9.9",
    "0.0.0.0",
    "169.254.169.254",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "fe80::1",
    "224.0.0.1",
    "ff02::1",
    "172.18.0.1",
    "garbage",
  ])("counts %s as the host's own", (address) => {
    expect(isHostLocal(address)).toBe(true);
  });

  it.each(["172.18.0.2", "10.0.0.1", "192.0.2.1", "2001:db8::1", "fd00::1"])(
    "does not count %s",
    (address) => {
      expect(isHostLocal(address)).toBe(false);
    },
  );
});
