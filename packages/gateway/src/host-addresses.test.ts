import { describe, expect, it } from "vitest";
import { addressGuard } from "./allow-rules.js";
import { hostAddresses, ipv6Of, localIpv4Of } from "./host-addresses.js";

const fibTrie = `Main:
  +-- 0.0.0.0/0 3 0 4
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 172.16.0.0/15 2 0 2
           |-- 172.17.0.0
              /16 link UNICAST
           |-- 172.17.0.1
              /32 host LOCAL
        |-- 172.17.255.255
           /32 link BROADCAST
           |-- 192.0.2.2
              /32 host LOCAL
Local:
           |-- 172.17.0.1
              /32 host LOCAL
`;

const ifInet6 = `fd000000000000000000000000000002 04 40 00 82     eth0
fe800000000000004c4067fffe1d79cb 1ed2 40 20 80 vethb7872ef
00000000000000000000000000000001 01 80 10 80       lo
`;

describe("hostAddresses", () => {
  it("takes the kernel's local IPv4 addresses, a bridge that is down included, and not loopback", () => {
    expect(localIpv4Of(fibTrie).sort()).toEqual(["172.17.0.1", "192.0.2.2"]);
  });

  it("takes the IPv6 addresses but loopback and link-local", () => {
    expect(ipv6Of(ifInet6)).toEqual(["fd00:0:0:0:0:0:0:2"]);
  });

  it("on this machine, lists every address Node sees and nothing of loopback", () => {
    const listed = hostAddresses();
    expect(listed).not.toContain("127.0.0.1");
    expect(listed.every((address) => !address.includes("%"))).toBe(true);
  });

  it("are all refused by the proxy's address guard, interfaces that are down included", () => {
    const guard = addressGuard();
    expect(hostAddresses().filter((address) => guard(address) === undefined)).toEqual([]);
  });
});
