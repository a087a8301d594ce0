import { BottleError } from "@claude-bottle/core";
import { describe, expect, it } from "vitest";
import { assessPodman, hasSubordinateIds, type PodmanHost, podmanInitPath } from "./availability.js";

/** `podman info --format json` as Podman 4.3 prints it on a cgroup v1 machine (abridged). */
const infoV1 = {
  host: {
    cgroupVersion: "v1",
    ociRuntime: { name: "runc", path: "/usr/bin/runc" },
    security: { rootless: true },
    slirp4netns: { executable: "/usr/bin/slirp4netns" },
  },
  version: { Version: "4.3.1" },
};

/** The same on cgroup v2 with systemd's usual delegation (no cpu for users by default on some). */
const infoV2 = {
  host: {
    cgroupVersion: "v2",
    ociRuntime: { name: "crun", path: "/usr/bin/crun" },
    security: { rootless: true },
    pasta: { executable: "/usr/bin/pasta" },
  },
  version: { Version: "5.2.2" },
};

interface Machine {
  uid?: number;
  controllers?: string[];
  info?: unknown;
  infoError?: Error;
  files?: Record<string, string>;
  paths?: string[];
  writable?: string[];
}

/** A machine described in data: the host view the checks read. */
function host(machine: Machine = {}): PodmanHost {
  const files = machine.files ?? {
    "/etc/subuid": "someone:100000:65536\nalice:165536:65536\n",
    "/etc/subgid": "someone:100000:65536\nalice:165536:65536\n",
  };
  const paths = new Set(machine.paths ?? [podmanInitPath]);
  const writable = new Set(machine.writable ?? ["/dev/net/tun"]);
  return {
    user: () => ({ uid: machine.uid ?? 1000, gid: 1000, name: "alice" }),
    podmanInfo: async () => {
      if (machine.infoError) throw machine.infoError;
      return machine.info ?? infoV1;
    },
    readText: async (path) => files[path],
    exists: async (path) => paths.has(path) || path in files,
    canReadWrite: async (path) => writable.has(path),
    delegatedControllers: () => machine.controllers ?? [],
  };
}

describe("assessPodman", () => {
  it("is available on a working rootless machine, and says it cannot limit resources on cgroup v1", async () => {
    const result = await assessPodman(host());
    expect(result).toEqual({
      available: true,
      setup: {
        version: "Podman 4.3.1",
        resources: { cpus: false, memory: false, pids: false },
        notes: [expect.stringMatching(/cannot limit a bottle's CPU, memory or processes.*cgroup v1/)],
      },
    });
  });

  it("enforces exactly the controllers delegated on cgroup v2, and names the missing one", async () => {
    const result = await assessPodman(host({ info: infoV2, controllers: ["memory", "pids"] }));
    if (!result.available) throw new Error(result.reason);
    expect(result.setup.resources).toEqual({ cpus: false, memory: true, pids: true });
    expect(result.setup.notes).toEqual([
      expect.stringMatching(/CPU use: that cgroup controller is not delegated/),
    ]);
    expect(result.setup.runtime).toBeUndefined();
  });

  it("refuses root in one line that says why and what to use instead", async () => {
    const result = await assessPodman(host({ uid: 0 }));
    expect(result).toMatchObject({ available: false, reason: expect.stringMatching(/rootless.*root/) });
    if (result.available) return;
    expect(result.fix).toMatch(/regular user.*docker backend/);
  });

  it("passes on podman's own error when podman is missing or broken", async () => {
    const infoError = new BottleError("BACKEND_UNAVAILABLE", "Podman (podman) is not installed", {
      hint: "install Podman",
    });
    expect(await assessPodman(host({ infoError }))).toEqual({
      available: false,
      reason: "Podman (podman) is not installed",
      fix: "install Podman",
    });
  });

  it("refuses Podman 3 and says which version it needs", async () => {
    const result = await assessPodman(host({ info: { ...infoV1, version: { Version: "3.4.4" } } }));
    expect(result).toMatchObject({
      available: false,
      version: "Podman 3.4.4",
      reason: expect.stringContaining("Podman 4.0.0 or later"),
    });
  });

  it("refuses a user without subordinate ids, with the usermod line to fix it", async () => {
    const result = await assessPodman(
      host({ files: { "/etc/subuid": "bob:100000:65536\n", "/etc/subgid": "alice:165536:65536\n" } }),
    );
    expect(result).toMatchObject({ available: false, reason: expect.stringContaining("/etc/subuid") });
    if (result.available) return;
    expect(result.fix).toContain(
      "sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice",
    );
  });

  it("chooses runc where crun cannot run (hybrid cgroups), and says so", async () => {
    const info = { ...infoV1, host: { ...infoV1.host, ociRuntime: { name: "crun" } } };
    const result = await assessPodman(
      host({ info, paths: [podmanInitPath, "/sys/fs/cgroup/unified", "/usr/sbin/runc"] }),
    );
    if (!result.available) throw new Error(result.reason);
    expect(result.setup.runtime).toBe("/usr/sbin/runc");
    expect(result.setup.notes).toContainEqual(expect.stringContaining("runc"));
  });

  it("keeps crun on a pure cgroup v1 machine (no unified hierarchy)", async () => {
    const info = { ...infoV1, host: { ...infoV1.host, ociRuntime: { name: "crun" } } };
    const result = await assessPodman(host({ info, paths: [podmanInitPath, "/usr/sbin/runc"] }));
    if (!result.available) throw new Error(result.reason);
    expect(result.setup.runtime).toBeUndefined();
  });

  it("refuses hybrid cgroups with crun and no runc, naming both fixes", async () => {
    const info = { ...infoV1, host: { ...infoV1.host, ociRuntime: { name: "crun" } } };
    const result = await assessPodman(host({ info, paths: [podmanInitPath, "/sys/fs/cgroup/unified"] }));
    expect(result).toMatchObject({ available: false, reason: expect.stringContaining("hybrid") });
    if (result.available) return;
    expect(result.fix).toMatch(/install runc.*cgroup v2/);
  });

  it("uses a static init in place of a missing catatonit, and refuses when there is none", async () => {
    const found = await assessPodman(host({ paths: ["/usr/bin/tini-static"] }));
    if (!found.available) throw new Error(found.reason);
    expect(found.setup.initPath).toBe("/usr/bin/tini-static");

    const none = await assessPodman(host({ paths: [] }));
    expect(none).toMatchObject({ available: false, fix: expect.stringContaining("apt install catatonit") });
  });

  it("refuses when /dev/net/tun cannot be opened, with the chmod that fixes it", async () => {
    const result = await assessPodman(host({ writable: [] }));
    expect(result).toMatchObject({
      available: false,
      reason: expect.stringContaining("slirp4netns"),
      fix: expect.stringContaining("sudo chmod 0666 /dev/net/tun"),
    });
  });

  it("refuses when there is no rootless network program", async () => {
    const info = { ...infoV1, host: { ...infoV1.host, slirp4netns: {} } };
    expect(await assessPodman(host({ info }))).toMatchObject({
      available: false,
      fix: expect.stringContaining("slirp4netns"),
    });
  });
});

describe("hasSubordinateIds", () => {
  it("matches the user by name or uid, and only with a range", () => {
    const user = { uid: 1000, name: "alice" };
    expect(hasSubordinateIds("alice:100000:65536", user)).toBe(true);
    expect(hasSubordinateIds("1000:100000:65536", user)).toBe(true);
    expect(hasSubordinateIds("alice2:100000:65536\nbob:1:2", user)).toBe(false);
    expect(hasSubordinateIds("alice:100000:0", user)).toBe(false);
    expect(hasSubordinateIds(undefined, user)).toBe(false);
  });
});
