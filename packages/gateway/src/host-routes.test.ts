import { describe, expect, it } from "vitest";
import { defaultGatewaysOf } from "./host-routes.js";

const routes = `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
`;
const routes6 = `00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003 eth0
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo
`;

describe("defaultGatewaysOf", () => {
  it("reads the default routes' next hops, IPv4 (little-endian hex) and IPv6", () => {
    expect(defaultGatewaysOf(routes, routes6)).toEqual([
      "172.17.0.1",
      "fd00:0000:0000:0000:0000:0000:0000:0001",
    ]);
  });

  it("finds nothing where there is no default route", () => {
    expect(defaultGatewaysOf(routes.split("\n").slice(0, 1).join("\n"), "")).toEqual([]);
    expect(defaultGatewaysOf("", "")).toEqual([]);
  });
});
