import { describe, expect, it } from "vitest";
import { hostPortSocket, hostPortSocketPattern, meetingDir, outboundDir, publishSocket } from "./layout.js";
import { gatewayConfigSchema } from "./protocol.js";

describe("the ports' sockets", () => {
  it("names each allowed host port's socket so that the relay finds the port again, and nothing else", () => {
    expect(hostPortSocketPattern.exec(hostPortSocket(5432))?.[1]).toBe("5432");
    for (const name of ["api.sock", "proxy.sock", "host-.sock", "host-5432.sock.tmp", ".host-5432.sock.tmp"])
      expect(hostPortSocketPattern.test(name), name).toBe(false);
    expect(publishSocket(3000)).toBe("publish-3000.sock");
  });

  it("keeps the bottle-writable folder apart from the gateway's read-only one", () => {
    expect(outboundDir.startsWith(`${meetingDir}/`)).toBe(false);
    expect(outboundDir).not.toBe(meetingDir);
  });

  it("carries the allowed host ports and published ports in the gateway's policy, and refuses bad ones", () => {
    const config = gatewayConfigSchema.parse({
      network: { mode: "allowlist", hostPorts: [5432], publish: [{ port: 3000, hostPort: 8080 }] },
    });
    expect(config.network.hostPorts).toEqual([5432]);
    expect(config.network.publish).toEqual([{ port: 3000, hostPort: 8080 }]);
    expect(gatewayConfigSchema.safeParse({ network: { hostPorts: [0] } }).success).toBe(false);
    expect(
      gatewayConfigSchema.safeParse({
        network: {
          publish: [
            { port: 1, hostPort: 9 },
            { port: 2, hostPort: 9 },
          ],
        },
      }).success,
    ).toBe(false);
  });
});
