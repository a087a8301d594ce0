import { bottleLabels, runSpecSchema } from "@claude-bottle/core";
import { describe, expect, it } from "vitest";
import { bottlesAmong } from "./bottles.js";
import { dockerFlavor, podmanFlavor } from "./engine-flavor.js";
import {
  bottleSecrets,
  gatewayConfigFor,
  gatewayNames,
  gatewayRunArgs,
  portInUse,
  refuseReservedPorts,
} from "./gateway-container.js";
import { type ContainerSummary, ImageEngine } from "./image-engine.js";

const docker = new ImageEngine({ flavor: dockerFlavor });

function spec(overrides: Record<string, unknown> = {}) {
  return runSpecSchema.parse({
    workspace: "/w",
    home: "/h",
    command: ["true"],
    name: "claude-bottle-w-abc123",
    secrets: { ANTHROPIC_API_KEY: "sk-real", OTHER_TOKEN: "o" },
    ...overrides,
  });
}

describe("gatewayRunArgs", () => {
  it("runs the gateway attached, removed on exit, hardened, on the default bridge, sharing the volume; no secret in argv", () => {
    const argv = gatewayRunArgs(docker, {
      spec: spec(),
      image: "claude-bottle-gateway:abc",
      hosts: { "a.test": "10.0.0.1" },
    });
    expect(argv.slice(0, 5)).toEqual([
      "run",
      "--interactive",
      "--rm",
      "--name",
      "claude-bottle-w-abc123-gateway",
    ]);
    expect(argv).toEqual(expect.arrayContaining(["--network", "bridge", "--cap-drop", "ALL", "--read-only"]));
    expect(argv).toEqual(expect.arrayContaining(["--add-host", "host.docker.internal:host-gateway"]));
    expect(argv).toEqual(expect.arrayContaining(["--add-host", "a.test:10.0.0.1"]));
    expect(argv).toContain("type=volume,source=claude-bottle-w-abc123-gateway,target=/run/claude-bottle");
    expect(argv).toContain(`${bottleLabels.role}=gateway`);
    expect(argv.at(-1)).toBe("claude-bottle-gateway:abc");
    expect(argv.join(" ")).not.toContain("sk-real");
  });
});

describe("ports", () => {
  const withPorts = spec({
    network: { mode: "allowlist", allow: [], hostPorts: [5432], publish: [{ port: 3000, hostPort: 8080 }] },
  });

  it("publishes each --publish port on this machine's 127.0.0.1 only, and mounts the outbound volume", () => {
    const argv = gatewayRunArgs(docker, { spec: withPorts, image: "g" });
    expect(argv).toEqual(expect.arrayContaining(["--publish", "127.0.0.1:8080:8080"]));
    expect(argv).toContain(
      "type=volume,source=claude-bottle-w-abc123-gateway-out,target=/run/claude-bottle-out",
    );
    // Without --publish: no port and no second volume.
    const plain = gatewayRunArgs(docker, { spec: spec(), image: "g" });
    expect(plain).not.toContain("--publish");
    expect(plain.join(" ")).not.toContain("gateway-out");
    expect(gatewayNames("b").outVolume).toBe("b-gateway-out");
  });

  it("passes the allowed host ports and the published ports to the gateway in its policy", () => {
    expect(gatewayConfigFor(withPorts, dockerFlavor).network).toMatchObject({
      hostPorts: [5432],
      publish: [{ port: 3000, hostPort: 8080 }],
    });
  });

  it("refuses the relay's own ports and a port that would be both allowed and published", () => {
    const network = (extra: Record<string, unknown>) =>
      spec({ network: { mode: "allowlist", allow: [], ...extra } });
    expect(() => refuseReservedPorts(withPorts, dockerFlavor)).not.toThrow();
    expect(() => refuseReservedPorts(network({ hostPorts: [47080] }), dockerFlavor)).toThrow(
      /--allow-host-port 47080: port 47080 is used inside the bottle by claude-bottle's own relay/,
    );
    expect(() =>
      refuseReservedPorts(network({ publish: [{ port: 47128, hostPort: 9000 }] }), dockerFlavor),
    ).toThrow(/--publish 47128:9000/);
    expect(() =>
      refuseReservedPorts(
        network({ hostPorts: [3000], publish: [{ port: 3000, hostPort: 3000 }] }),
        dockerFlavor,
      ),
    ).toThrow(/port 3000 is both an allowed host port and a published port/);
  });

  it("recognises Docker's errors for a host port in use, and only for a published one", () => {
    const docker =
      "docker: Error response from daemon: failed to set up container networking: driver failed programming external connectivity on endpoint x: Bind for 127.0.0.1:8080 failed: port is already allocated";
    expect(portInUse(docker, withPorts)).toBe(8080);
    expect(portInUse("listen tcp4 127.0.0.1:8080: bind: address already in use", withPorts)).toBe(8080);
    expect(portInUse("Bind for 127.0.0.1:9999 failed: port is already allocated", withPorts)).toBeUndefined();
    expect(portInUse("some other failure on 8080", withPorts)).toBeUndefined();
  });
});

describe("gatewayConfigFor and bottleSecrets", () => {
  it("gives the gateway the API credential and the bottle only the others", () => {
    expect(gatewayConfigFor(spec(), dockerFlavor).secrets).toEqual({ ANTHROPIC_API_KEY: "sk-real" });
    expect(bottleSecrets(spec())).toEqual({ OTHER_TOKEN: "o" });
  });

  it("with passthrough, gives the gateway nothing and the bottle everything", () => {
    const passthrough = spec({ passthroughCredentials: true });
    expect(gatewayConfigFor(passthrough, dockerFlavor).secrets).toEqual({});
    expect(bottleSecrets(passthrough)).toEqual({ ANTHROPIC_API_KEY: "sk-real", OTHER_TOKEN: "o" });
  });

  it("rewrites a loopback baseUrl to host.docker.internal and asks for a probe that names the original", () => {
    for (const host of ["127.0.0.1", "localhost", "[::1]"]) {
      const config = gatewayConfigFor(spec({ anthropicBaseUrl: `http://${host}:4000/llm` }), dockerFlavor);
      expect(config.anthropicBaseUrl).toBe("http://host.docker.internal:4000/llm");
      expect(config.probeUpstream).toBe(true);
      expect(config.upstreamHint).toContain(`http://${host}:4000/llm is on this machine's loopback`);
    }
    const remote = gatewayConfigFor(
      spec({ anthropicBaseUrl: "https://gateway.example/anthropic" }),
      dockerFlavor,
    );
    expect(remote.anthropicBaseUrl).toBe("https://gateway.example/anthropic");
    expect(remote.probeUpstream).toBeUndefined();
  });

  it("names this machine's addresses for the proxy to refuse", () => {
    const { cliHostAddresses = [] } = gatewayConfigFor(spec(), dockerFlavor);
    expect(cliHostAddresses.length).toBeGreaterThan(0);
    expect(cliHostAddresses).not.toContain("127.0.0.1");
  });
});

describe("bottlesAmong", () => {
  const container = (name: string, labels: Record<string, string>): ContainerSummary => ({
    id: name,
    name,
    image: "i",
    status: "Up 1 minute",
    createdAt: "2025-05-05 10:00:00 +0000 UTC",
    labels: { [bottleLabels.workspace]: "/w", ...labels },
  });

  it("lists bottles, and a gateway left without its bottle under the bottle's name", () => {
    const bottles = bottlesAmong(
      [
        container("b1", { [bottleLabels.role]: "bottle" }),
        container("b1-gateway", { [bottleLabels.role]: "gateway", "dev.claude-bottle.bottle": "b1" }),
        container("b2-gateway", { [bottleLabels.role]: "gateway", "dev.claude-bottle.bottle": "b2" }),
      ],
      dockerFlavor,
    );
    expect(bottles.map((bottle) => [bottle.name, bottle.status])).toEqual([
      ["b1", "Up 1 minute"],
      ["b2", "gateway only (Up 1 minute)"],
    ]);
  });
});

describe("the gateway on rootless Podman", () => {
  const podman = new ImageEngine({ flavor: podmanFlavor });

  it("joins Podman's default network and leaves host.containers.internal to Podman (4.3 refuses host-gateway)", () => {
    const argv = gatewayRunArgs(podman, { spec: spec(), image: "g", hosts: { "a.test": "10.0.0.1" } });
    expect(argv).not.toContain("--network");
    expect(argv.filter((arg) => arg.includes("host-gateway"))).toEqual([]);
    expect(argv).toEqual(expect.arrayContaining(["--add-host", "a.test:10.0.0.1"]));
    expect(argv).toContain(`${bottleLabels.backend}=podman`);
    expect(argv).toEqual(expect.arrayContaining(["--cap-drop", "ALL", "--read-only", "--pull", "never"]));
    expect(argv.join(" ")).not.toContain("sk-real");
  });

  it("rewrites a loopback baseUrl to host.containers.internal", () => {
    const config = gatewayConfigFor(spec({ anthropicBaseUrl: "http://127.0.0.1:4000/llm" }), podmanFlavor);
    expect(config.anthropicBaseUrl).toBe("http://host.containers.internal:4000/llm");
    expect(config.upstreamHint).toContain("Podman engine's containers");
    expect(config.upstreamHint).not.toContain("docker0");
  });
});
