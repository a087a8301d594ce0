import { bottleLabels, type RunSpecInput, runSpecSchema } from "@claude-bottle/core";
import { describe, expect, it } from "vitest";
import {
  type BottleRunInput,
  bottleLabelsFor,
  bottleRunArgs,
  type EngineArgs,
  formatEngineCommand,
  scratchTmpfs,
} from "./bottle-run-args.js";
import { dockerFlavor, podmanFlavor } from "./engine-flavor.js";
import { ImageEngine } from "./image-engine.js";

const docker: EngineArgs = new ImageEngine({ flavor: dockerFlavor });

function spec(overrides: Partial<RunSpecInput> = {}) {
  return runSpecSchema.parse({
    workspace: "/home/ada/src/engine",
    command: ["claude", "--dangerously-skip-permissions"],
    home: "/home/ada/.local/share/claude-bottle/homes/engine",
    user: { uid: 1000, gid: 1001 },
    name: "claude-bottle-engine-1a2b3c",
    ...overrides,
  });
}

function args(overrides: Partial<RunSpecInput> = {}, extra: Partial<BottleRunInput> = {}) {
  return bottleRunArgs(docker, { spec: spec(overrides), image: "sha256:abc", network: "engine", ...extra });
}

/** The value following `flag` each time it appears. */
function values(argv: string[], flag: string): string[] {
  return argv.flatMap((arg, i) => (arg === flag ? [argv[i + 1]!] : []));
}

/** The env the bottle would see: NAME=value entries, and bare names for pass-through credentials. */
function envOf(argv: string[]): Map<string, string | undefined> {
  const env = new Map<string, string | undefined>();
  for (const entry of values(argv, "--env")) {
    const at = entry.indexOf("=");
    env.set(at < 0 ? entry : entry.slice(0, at), at < 0 ? undefined : entry.slice(at + 1));
  }
  return env;
}

describe("bottleRunArgs for Docker", () => {
  it("runs the image with the command as argv, removed on exit, named after the bottle, on its network", () => {
    const argv = args({ command: ["sh", "-c", "echo 'hi there'; exit 7"] });
    expect(argv[0]).toBe("run");
    expect(argv).toContain("--rm");
    expect(values(argv, "--name")).toEqual(["claude-bottle-engine-1a2b3c"]);
    expect(values(argv, "--network")).toEqual(["bridge"]);
    expect(argv.slice(-4)).toEqual(["sha256:abc", "sh", "-c", "echo 'hi there'; exit 7"]);
  });

  it("mounts the workspace at the same path as the working directory, and the home at its target", () => {
    const argv = args({ mounts: [{ source: "/data/sets", target: "/data", readOnly: true }] });
    expect(values(argv, "--mount")).toEqual([
      "type=bind,source=/home/ada/src/engine,target=/home/ada/src/engine",
      "type=bind,source=/home/ada/.local/share/claude-bottle/homes/engine,target=/home/claude",
      "type=bind,source=/data/sets,target=/data,readonly",
    ]);
    expect(values(argv, "--workdir")).toEqual(["/home/ada/src/engine"]);
    expect(envOf(argv).get("HOME")).toBe("/home/claude");
  });

  it("makes readOnlyPaths read-only and pins every folder above them, parents first", () => {
    const ws = "/home/ada/src/engine";
    const argv = args({
      readOnlyPaths: [
        `${ws}/.gitmodules`,
        `${ws}/.git/hooks`,
        `${ws}/.git/config`,
        `${ws}/.git/modules/lib/config`,
      ],
    });
    expect(values(argv, "--mount").slice(2)).toEqual([
      `type=bind,source=${ws}/.git,target=${ws}/.git`,
      `type=bind,source=${ws}/.gitmodules,target=${ws}/.gitmodules,readonly`,
      `type=bind,source=${ws}/.git/config,target=${ws}/.git/config,readonly`,
      `type=bind,source=${ws}/.git/hooks,target=${ws}/.git/hooks,readonly`,
      `type=bind,source=${ws}/.git/modules,target=${ws}/.git/modules`,
      `type=bind,source=${ws}/.git/modules/lib,target=${ws}/.git/modules/lib`,
      `type=bind,source=${ws}/.git/modules/lib/config,target=${ws}/.git/modules/lib/config,readonly`,
    ]);
  });

  it("maps a read-only path inside an extra mount to its host source, and skips one in a read-only mount", () => {
    const argv = args({
      mounts: [
        { source: "/srv/main-repo/.git", target: "/repos/main/.git", readOnly: false },
        { source: "/data/sets", target: "/data", readOnly: true },
      ],
      readOnlyPaths: ["/repos/main/.git/hooks", "/data/x/config"],
    });
    expect(values(argv, "--mount").slice(4)).toEqual([
      "type=bind,source=/srv/main-repo/.git/hooks,target=/repos/main/.git/hooks,readonly",
    ]);
  });

  it("refuses a read-only path outside the workspace and the mounts", () => {
    expect(() => args({ readOnlyPaths: ["/etc/passwd"] })).toThrow(
      "the read-only path /etc/passwd is not inside the workspace or a mount",
    );
  });

  it("quotes mount fields holding commas or quotes the way docker's CSV parser reads them", () => {
    const argv = args({ workspace: '/src/a,b "c"' });
    expect(values(argv, "--mount")[0]).toBe('type=bind,"source=/src/a,b ""c""","target=/src/a,b ""c"""');
    expect(values(argv, "--workdir")).toEqual(['/src/a,b "c"']);
  });

  it("honours a custom home target", () => {
    const argv = args({ homeTarget: "/root-less/home" });
    expect(values(argv, "--mount")[1]).toMatch(/,target=\/root-less\/home$/);
    expect(envOf(argv).get("HOME")).toBe("/root-less/home");
  });

  it("runs as the invoking user's uid:gid, without claiming to be a sandbox for root", () => {
    const argv = args({ user: { uid: 501, gid: 20 } });
    expect(values(argv, "--user")).toEqual(["501:20"]);
    expect(envOf(argv).has("IS_SANDBOX")).toBe(false);
  });

  it("runs as the image's non-root claude user with IS_SANDBOX=1 when no user is given", () => {
    const argv = args({ user: undefined });
    expect(values(argv, "--user")).toEqual(["10001:10001"]);
    expect(envOf(argv).get("IS_SANDBOX")).toBe("1");
  });

  it("runs uid 0 (a root-owned workspace) as root, marked as a sandbox, and as hardened as any bottle", () => {
    const argv = args({ user: { uid: 0, gid: 0 } });
    expect(values(argv, "--user")).toEqual(["0:0"]);
    expect(envOf(argv).get("IS_SANDBOX")).toBe("1");
    expect(values(argv, "--cap-drop")).toEqual(["ALL"]);
    expect(values(argv, "--security-opt")).toEqual(["no-new-privileges"]);
    expect(values(argv, "--cap-add")).toEqual([]);
    expect(argv).not.toContain("--privileged");
  });

  it("hardens the container: no capabilities, no privilege gain, read-only root, init, the default limits", () => {
    const argv = args();
    expect(values(argv, "--cap-drop")).toEqual(["ALL"]);
    expect(values(argv, "--security-opt")).toEqual(["no-new-privileges"]);
    expect(argv).toContain("--read-only");
    expect(values(argv, "--tmpfs")).toEqual([scratchTmpfs]);
    expect(argv).toContain("--init");
    expect(values(argv, "--pids-limit")).toEqual(["1024"]);
    expect(values(argv, "--memory")).toEqual(["4096m"]);
    expect(values(argv, "--cpus")).toEqual(["2"]);
    expect(argv).not.toContain("--privileged");
    expect(argv.join(" ")).not.toContain("docker.sock");
  });

  it("takes limits from spec.resources", () => {
    const argv = args({ resources: { cpus: 1.5, memoryMiB: 768, pids: 64 } });
    expect(values(argv, "--pids-limit")).toEqual(["64"]);
    expect(values(argv, "--memory")).toEqual(["768m"]);
    expect(values(argv, "--cpus")).toEqual(["1.5"]);
  });

  it.each([
    [{ tty: true, stdin: false }, ["--interactive", "--tty"]],
    [{ tty: true, stdin: true }, ["--interactive", "--tty"]],
    [{ tty: false, stdin: true }, ["--interactive"]],
    [{ tty: false, stdin: false }, []],
  ])("maps %o to %o", (io, flags) => {
    const argv = args(io);
    expect(argv.filter((arg) => arg === "--interactive" || arg === "--tty")).toEqual(flags);
  });

  it("labels the bottle for ps and stop, keeping the CLI's labels", () => {
    const argv = args({ labels: { [bottleLabels.project]: "engine", "com.example.team": "infra" } });
    expect(values(argv, "--label")).toEqual([
      `${bottleLabels.project}=engine`,
      "com.example.team=infra",
      `${bottleLabels.role}=bottle`,
      `${bottleLabels.backend}=docker`,
      `${bottleLabels.workspace}=/home/ada/src/engine`,
    ]);
  });

  it("names the project after the workspace folder when the CLI gives none", () => {
    expect(bottleLabelsFor(spec(), dockerFlavor)[bottleLabels.project]).toBe("engine");
  });

  it("sets plain env as NAME=value and credentials by name only", () => {
    const argv = bottleRunArgs(docker, {
      spec: spec({ env: { TERM: "xterm-256color", ANTHROPIC_BASE_URL: "http://ignored" } }),
      image: "img",
      network: "engine",
      serviceEnv: { ANTHROPIC_BASE_URL: "http://172.18.0.1:40000" },
      secretNames: ["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"],
    });
    const env = envOf(argv);
    expect(env.get("TERM")).toBe("xterm-256color");
    expect(env.get("ANTHROPIC_BASE_URL")).toBe("http://172.18.0.1:40000");
    expect(values(argv, "--env")).toContain("ANTHROPIC_API_KEY");
    expect(values(argv, "--env")).toContain("CLAUDE_CODE_OAUTH_TOKEN");
    // each name once, so nothing later in argv can override a value unexpectedly
    expect(values(argv, "--env").filter((entry) => entry.startsWith("ANTHROPIC_BASE_URL"))).toHaveLength(1);
  });

  it("refuses environment names docker would misread", () => {
    expect(() => args({ env: { "A=B": "x" } })).toThrow(
      expect.objectContaining({ code: "INVALID_CONFIG", message: expect.stringContaining('"A=B"') }),
    );
  });

  it.each([
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/home/ada/.docker/run/docker.sock",
    "/var/run",
    "/var/run/",
    "/var",
    "/",
    "/run/podman/podman.sock",
    "/run/user/1000/podman/podman.sock",
    "/run/user/1000/podman",
    "/run/user/1000",
    "/run/user",
  ])("refuses to mount %s, which exposes an engine's socket", (source) => {
    expect(() => args({ mounts: [{ source, target: "/x", readOnly: true }] })).toThrow(
      expect.objectContaining({
        code: "INVALID_CONFIG",
        message: expect.stringContaining("engine's socket"),
      }),
    );
  });

  it("refuses a workspace or home that holds the Docker socket", () => {
    expect(() => args({ workspace: "/" })).toThrow(expect.objectContaining({ code: "INVALID_CONFIG" }));
    expect(() => args({ home: "/run" })).toThrow(expect.objectContaining({ code: "INVALID_CONFIG" }));
  });

  it("allows folders that merely share a prefix with the socket's folder", () => {
    expect(() => args({ mounts: [{ source: "/variable", target: "/v", readOnly: false }] })).not.toThrow();
    expect(() =>
      args({ mounts: [{ source: "/runner/cache", target: "/c", readOnly: false }] }),
    ).not.toThrow();
  });
});

describe("bottleRunArgs and the gateway", () => {
  it("mounts the gateway's volume and the relay's file read-only and puts the relay's bootstrap before the command", () => {
    const argv = args(
      { command: ["claude", "-p", "hi"] },
      {
        network: "none",
        gatewayVolume: { name: "b-gateway", target: "/run/claude-bottle" },
        relayFile: "/home/u/.cache/claude-bottle/relay/0123456789abcdef.mjs",
        commandPrefix: ["node", "/run/claude-bottle-relay.mjs", "{}"],
      },
    );
    expect(values(argv, "--network")).toEqual(["none"]);
    expect(values(argv, "--mount")).toContain(
      "type=volume,source=b-gateway,target=/run/claude-bottle,readonly",
    );
    expect(values(argv, "--mount")).toContain(
      "type=bind,source=/home/u/.cache/claude-bottle/relay/0123456789abcdef.mjs,target=/run/claude-bottle-relay.mjs,readonly",
    );
    expect(argv.slice(argv.indexOf("sha256:abc"))).toEqual([
      "sha256:abc",
      "node",
      "/run/claude-bottle-relay.mjs",
      "{}",
      "claude",
      "-p",
      "hi",
    ]);
  });
});

describe("bottleRunArgs and published ports", () => {
  it("mounts the outbound volume read-write (the relay makes its sockets there) and publishes nothing itself", () => {
    const argv = args(
      { network: { mode: "allowlist", allow: [], publish: [{ port: 3000, hostPort: 8080 }] } },
      {
        network: "none",
        gatewayVolume: { name: "b-gateway", target: "/run/claude-bottle" },
        outboundVolume: { name: "b-gateway-out", target: "/run/claude-bottle-out" },
      },
    );
    expect(values(argv, "--mount")).toContain(
      "type=volume,source=b-gateway-out,target=/run/claude-bottle-out",
    );
    expect(argv).not.toContain("--publish");
    expect(argv).not.toContain("-p");
  });
});

describe("formatEngineCommand", () => {
  it("renders a shell line that quotes what needs quoting", () => {
    const line = formatEngineCommand(["docker", "run", "--rm", "img", "sh", "-c", "echo 'a b'; exit 7"]);
    expect(line).toBe(`docker run --rm img sh -c 'echo '\\''a b'\\''; exit 7'`);
  });

  it("shows credentials by name only, as they are passed", () => {
    const argv = bottleRunArgs(docker, {
      spec: spec(),
      image: "img",
      network: "engine",
      secretNames: ["ANTHROPIC_API_KEY"],
    });
    const line = formatEngineCommand(["docker", ...argv], { ANTHROPIC_API_KEY: "sk-ant-secret-value" });
    expect(line).toContain("--env ANTHROPIC_API_KEY ");
    expect(line).not.toContain("sk-ant-secret-value");
  });

  it("redacts a secret value wherever it still appears, longest first", () => {
    const argv = args({ env: { LEAK: "token=sk-ant-abc123-more", SHORT: "sk-ant-abc123" } });
    const line = formatEngineCommand(["docker", ...argv], { A: "sk-ant-abc123", B: "sk-ant-abc123-more" });
    expect(line).toContain("--env 'LEAK=token=***'");
    expect(line).toContain("--env 'SHORT=***'");
    expect(line).not.toContain("sk-ant-abc123");
  });

  it("names the CLI it runs, with the engine's global options", () => {
    const podman = new ImageEngine({ flavor: podmanFlavor, binary: "/usr/bin/podman", runtime: "runc" });
    expect(formatEngineCommand(podman.commandLine(["ps"]))).toBe("/usr/bin/podman --runtime runc ps");
  });
});

describe("bottleRunArgs for rootless Podman", () => {
  const podman = new ImageEngine({ flavor: podmanFlavor, runtime: "runc" });
  const podmanArgs = (extra: Partial<BottleRunInput> = {}) =>
    bottleRunArgs(podman, {
      spec: spec({
        mounts: [{ source: "/data/sets", target: "/data", readOnly: true }],
        readOnlyPaths: ["/home/ada/src/engine/.git/config"],
      }),
      image: "sha256:abc",
      network: "none",
      gatewayVolume: { name: "b-gateway", target: "/run/claude-bottle" },
      ...extra,
    });

  it("keeps the user's id inside (--userns=keep-id) and still runs as the spec's user", () => {
    const argv = podmanArgs();
    expect(argv).toContain("--userns=keep-id");
    expect(values(argv, "--user")).toEqual(["1000:1001"]);
    // The runtime override is a global flag of podman (engine.commandLine), not a `run` flag.
    expect(argv).not.toContain("--runtime");
    expect(podman.commandLine(argv).slice(0, 4)).toEqual(["podman", "--runtime", "runc", "run"]);
  });

  it("makes mounts read-only with `ro`, which Podman 4.3 takes for volumes where it refuses `readonly`", () => {
    const mounts = values(podmanArgs(), "--mount");
    expect(mounts).toContain("type=volume,source=b-gateway,target=/run/claude-bottle,ro");
    expect(mounts).toContain("type=bind,source=/data/sets,target=/data,ro");
    expect(mounts).toContain(
      "type=bind,source=/home/ada/src/engine/.git/config,target=/home/ada/src/engine/.git/config,ro",
    );
    expect(mounts.filter((mount) => mount.endsWith(",readonly"))).toEqual([]);
  });

  it("has no network of its own unless open, and then Podman's default network rather than `bridge`", () => {
    expect(values(podmanArgs(), "--network")).toEqual(["none"]);
    expect(values(podmanArgs({ network: "engine" }), "--network")).toEqual([]);
  });

  it("applies the same hardening and limits as on Docker, and labels the bottle as Podman's", () => {
    const argv = podmanArgs();
    for (const flag of ["--cap-drop", "--security-opt", "--pids-limit", "--memory", "--read-only", "--init"])
      expect(argv).toContain(flag);
    expect(argv).toContain(`${bottleLabels.backend}=podman`);
    expect(() =>
      podmanArgs({
        spec: spec({ mounts: [{ source: "/run/user/1000/podman", target: "/p", readOnly: true }] }),
      }),
    ).toThrow(expect.objectContaining({ code: "INVALID_CONFIG", backend: "podman" }));
  });
});

describe("bottleRunArgs with a Docker runtime override", () => {
  it("puts --runtime among run's arguments, where docker takes it", () => {
    const engine = new ImageEngine({ flavor: dockerFlavor, runtime: "runsc" });
    const argv = bottleRunArgs(engine, { spec: spec(), image: "img", network: "none" });
    expect(argv.slice(0, 3)).toEqual(["run", "--runtime", "runsc"]);
    expect(engine.commandLine(argv)[1]).toBe("run");
  });
});
