// How an engine set up for this machine (ImageEngine's initPath and limits, which the Podman
// backend's availability check chooses) shows in the bottle's and the gateway's run arguments.
import { runSpecSchema } from "@claude-bottle/core";
import { describe, expect, it } from "vitest";
import { bottleRunArgs } from "./bottle-run-args.js";
import { dockerFlavor, podmanFlavor } from "./engine-flavor.js";
import { gatewayConfigFor, gatewayRunArgs } from "./gateway-container.js";
import { ImageEngine } from "./image-engine.js";

const spec = runSpecSchema.parse({
  workspace: "/home/ada/src/engine",
  command: ["claude"],
  home: "/home/ada/.local/share/claude-bottle/homes/engine",
  user: { uid: 1000, gid: 1000 },
  name: "claude-bottle-engine-1a2b3c",
  resources: { cpus: 2, memoryMiB: 768, pids: 64 },
});

function both(engine: ImageEngine): string[][] {
  return [
    bottleRunArgs(engine, { spec, image: "sha256:abc", network: "none" }),
    gatewayRunArgs(engine, { spec, image: "claude-bottle-gateway:1" }),
  ];
}

describe("an engine set up for this machine", () => {
  it("applies every limit and Podman's own init by default", () => {
    const [bottle, gateway] = both(new ImageEngine({ flavor: podmanFlavor }));
    expect(bottle).toEqual(
      expect.arrayContaining(["--init", "--pids-limit", "64", "--memory", "768m", "--cpus", "2"]),
    );
    expect(bottle).not.toContain("--init-path");
    expect(gateway).toEqual(expect.arrayContaining(["--pids-limit", "256", "--memory", "256m"]));
  });

  it("passes no limit the engine cannot apply (rootless on cgroup v1 would warn on the user's terminal)", () => {
    const none = new ImageEngine({
      flavor: podmanFlavor,
      limits: { cpus: false, memory: false, pids: false },
    });
    for (const argv of both(none)) {
      for (const flag of ["--pids-limit", "--memory", "--cpus"]) expect(argv).not.toContain(flag);
    }
    const some = new ImageEngine({ flavor: podmanFlavor, limits: { cpus: false, memory: true, pids: true } });
    const [bottle] = both(some);
    expect(bottle).toEqual(expect.arrayContaining(["--pids-limit", "64", "--memory", "768m"]));
    expect(bottle).not.toContain("--cpus");
  });

  it("names the init where the engine's own is missing", () => {
    const [bottle] = both(new ImageEngine({ flavor: podmanFlavor, initPath: "/usr/bin/tini-static" }));
    const at = bottle!.indexOf("--init");
    expect(bottle!.slice(at, at + 3)).toEqual(["--init", "--init-path", "/usr/bin/tini-static"]);
  });

  it("tells the gateway the name its engine gives the machine it runs on, for host ports and the proxy", () => {
    expect(gatewayConfigFor(spec, podmanFlavor).engineHost).toBe("host.containers.internal");
    expect(gatewayConfigFor(spec, dockerFlavor).engineHost).toBe("host.docker.internal");
  });
});
