import type { NetworkInterfaceInfo } from "node:os";
import { describe, expect, it } from "vitest";
import {
  addressGuard,
  compileAllowList,
  embeddedIpv4,
  hostLocalCheck,
  parseTargetHost,
} from "./allow-rules.js";

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

describe("addressGuard", () => {
  const iface = (address: string): NetworkInterfaceInfo => ({
    address,
    netmask: "255.255.0.0",
    family: "IPv4",
    mac: "02:42:00:00:00:00",
    internal: false,
    cidr: `${address}/16`,
  });

  it("refuses cloud metadata addresses and their IPv6 spellings as metadata", () => {
    const guard = addressGuard({ interfaces: () => ({}) });
    for (const address of [
      "169.254.169.254",
      "fd00:ec2::254",
      "fd20:ce::254",
      "100.100.100.200",
      "168.63.129.16",
      "192.0.0.192",
      "::ffff:a9fe:a9fe",
      "::a9fe:a9fe",
      "64:ff9b::a9fe:a9fe",
      "2002:a9fe:a9fe::1",
    ]) {
      expect(guard(address), address).toBe("metadata");
    }
  });

  it("refuses loopback, unspecified, multicast and the host's interfaces as host-local, also inside IPv6", () => {
    const guard = addressGuard({ interfaces: () => ({ docker0: [iface("172.17.0.1")] }) });
    for (const address of [
      "127.0.0.1",
      "127.9.9.9",
      "0.0.0.0",
      "::1",
      "::",
      "224.0.0.1",
      "ff02::1",
      "fe80::1",
    ]) {
      expect(guard(address), address).toBe("host-local");
    }
    for (const address of ["172.17.0.1", "::ffff:ac11:1", "64:ff9b::ac11:1", "2002:ac11:1::"]) {
      expect(guard(address), address).toBe("host-local");
    }
    expect(guard("172.17.0.2")).toBeUndefined();
    expect(guard("93.184.216.34")).toBeUndefined();
    expect(guard("2606:4700::1111")).toBeUndefined();
    expect(guard("not-an-address")).toBe("forbidden");
  });

  it("reads the interfaces again once the cached read is older than cacheMs", () => {
    let clock = 0;
    let reads = 0;
    let current: Record<string, NetworkInterfaceInfo[]> = { eth0: [iface("10.1.0.1")] };
    const guard = addressGuard({
      interfaces: () => {
        reads += 1;
        return current;
      },
      cacheMs: 1000,
      now: () => clock,
    });
    expect(guard("10.2.0.1")).toBeUndefined();
    current = { eth0: [iface("10.1.0.1")], br1: [iface("10.2.0.1")] };
    clock = 999;
    expect(guard("10.2.0.1")).toBeUndefined();
    clock = 1000;
    expect(guard("10.2.0.1")).toBe("host-local");
    expect(reads).toBe(2);
  });

  it("refuses the ranges it is given as forbidden, and an injected host check replaces the built-in one", () => {
    const guard = addressGuard({
      interfaces: () => ({}),
      forbiddenRanges: ["172.16.0.0/12", "fd99::/16"],
      isHostLocal: (address) => address === "198.51.100.7",
    });
    expect(guard("172.20.1.1")).toBe("forbidden");
    expect(guard("fd99::5")).toBe("forbidden");
    expect(guard("198.51.100.7")).toBe("host-local");
    expect(guard("127.0.0.1")).toBeUndefined();
    expect(guard("169.254.169.254")).toBe("metadata");
  });

  it("counts the host ranges it is given as the host itself, beside this machine's own addresses", () => {
    const guard = addressGuard({
      interfaces: () => ({ eth0: [iface("172.17.0.2")] }),
      hostRanges: ["172.17.0.1/32", "10.231.0.1/32"],
    });
    expect(guard("172.17.0.1")).toBe("host-local");
    expect(guard("10.231.0.1")).toBe("host-local");
    expect(guard("172.17.0.2")).toBe("host-local");
    expect(guard("172.17.0.3")).toBeUndefined();
  });

  it("finds the IPv4 address IPv6 forms carry, and nothing in ordinary IPv6 addresses", () => {
    expect(embeddedIpv4("::ffff:7f00:1")).toBe("127.0.0.1");
    expect(embeddedIpv4("::ffff:127.0.0.1")).toBe("127.0.0.1");
    expect(embeddedIpv4("64:ff9b::7f00:1")).toBe("127.0.0.1");
    expect(embeddedIpv4("2002:7f00:1::")).toBe("127.0.0.1");
    expect(embeddedIpv4("::1")).toBeUndefined();
    expect(embeddedIpv4("2001:db8::1")).toBeUndefined();
    expect(embeddedIpv4("10.0.0.1")).toBeUndefined();
  });
});
