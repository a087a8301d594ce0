import { describe, expect, it } from "vitest";
import { bottleBootstrap } from "./index.js";
import { gatewayConfigSchema, readGatewayLine } from "./protocol.js";

describe("readGatewayLine", () => {
  it("reads the gateway's messages", () => {
    expect(readGatewayLine('{"gateway":"ready"}')).toEqual({
      kind: "message",
      message: { gateway: "ready" },
    });
    expect(readGatewayLine('{"gateway":"failed","message":"no","hint":"do"}')).toEqual({
      kind: "message",
      message: { gateway: "failed", message: "no", hint: "do" },
    });
    expect(readGatewayLine('{"gateway":"closed","deniedHosts":["a.test"]}')).toEqual({
      kind: "message",
      message: { gateway: "closed", deniedHosts: ["a.test"] },
    });
  });

  it("reads a denial as the egress proxy logs it", () => {
    const denial = {
      time: "2026-01-01T00:00:00.000Z",
      host: "x.test",
      port: 443,
      method: "CONNECT",
      reason: "not-allowed",
    };
    expect(readGatewayLine(JSON.stringify(denial))).toEqual({ kind: "denial", denial });
  });

  it("passes anything else by as other", () => {
    for (const text of ["", "not json", "42", '{"gateway":"failed"}', '{"time":"t"}'])
      expect(readGatewayLine(text).kind).toBe("other");
  });
});

describe("gatewayConfigSchema", () => {
  it("takes the policy with defaults and refuses unknown keys", () => {
    expect(gatewayConfigSchema.parse({ network: {} })).toMatchObject({
      network: { mode: "allowlist", allow: [] },
      secrets: {},
      cliHostAddresses: [],
      probeUpstream: false,
    });
    expect(gatewayConfigSchema.safeParse({ network: {}, extra: 1 }).success).toBe(false);
  });
});

describe("bottleBootstrap", () => {
  it("runs node on a short script that loads the relay from the shared folder, then the command's argv", () => {
    const [node, flag, code, separator] = bottleBootstrap();
    expect([node, flag, separator]).toEqual(["node", "-e", "--"]);
    expect(code).toContain('"/run/claude-bottle/relay.mjs"');
    expect(code!.length).toBeLessThan(400);
  });
});
