import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bottleBootstrap, gatewayAppDir, relayPath, relayProgram } from "./index.js";
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
    expect(readGatewayLine('{"gateway":"closed","deniedHosts":["a.test"],"why":"ended"}')).toEqual({
      kind: "message",
      message: { gateway: "closed", deniedHosts: ["a.test"], why: "ended" },
    });
    // A stop it does not explain counts as one from outside, which fails the run.
    expect(readGatewayLine('{"gateway":"closed","deniedHosts":[]}')).toEqual({
      kind: "message",
      message: { gateway: "closed", deniedHosts: [], why: "signal" },
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
  const config = { services: [], hostPorts: [], publish: [], waitForGateway: false };

  it("runs the relay's file with node, its configuration first, then the command", () => {
    const [node, program, relayConfig] = bottleBootstrap(config, "node");
    expect([node, program]).toEqual(["node", relayPath]);
    expect(JSON.parse(relayConfig!)).toEqual(config);
    expect(relayProgram()).toContain("waitForGateway");
  });

  it("starts it with Perl when the image has it, with the end socket of the run's folder and every port to listen on", () => {
    const warm = { services: ["api", "proxy"] as const, hostPorts: [5432], runDir: "runs/abc" };
    const argv = bottleBootstrap({ ...config, ...warm, services: [...warm.services] }, "perl");
    expect(argv.slice(0, 2)).toEqual(["perl", "-e"]);
    expect(argv.slice(3)).toEqual([
      "--",
      relayPath,
      JSON.stringify({ ...config, ...warm }),
      "/run/claude-bottle/runs/abc/end.sock",
      "47080,47128,5432",
    ]);
    // A command that must wait for the gateway, or a run that publishes ports, starts with the relay.
    expect(bottleBootstrap({ ...config, waitForGateway: true }, "perl")[0]).toBe("node");
    expect(bottleBootstrap({ ...config, publish: [3000] }, "perl")[0]).toBe("node");
  });

  it("starts the command at once, without a gateway, with the environment it was given, and passes its exit code on", () => {
    const [, , relayConfig] = bottleBootstrap(config, "node");
    const run = spawnSync(
      process.execPath,
      [
        join(gatewayAppDir, "relay.mjs"),
        relayConfig!,
        process.execPath,
        "-e",
        "console.log(process.env.ANTHROPIC_BASE_URL); process.exit(3)",
      ],
      { env: { ANTHROPIC_BASE_URL: "http://127.0.0.1:47080" }, encoding: "utf8", timeout: 20_000 },
    );
    expect(run.stdout.trim()).toBe("http://127.0.0.1:47080");
    expect(run.status).toBe(3);
  });
});
