import { BottleError, runSpecSchema } from "@claude-bottle/core";
import { describe, expect, it } from "vitest";
import type { PodmanHost } from "./availability.js";
import { asInvokingUser, podman } from "./podman-backend.js";

/** A machine where rootless Podman works for alice (uid 1000), with `controllers` delegated to her. */
function host(controllers: string[] = []): PodmanHost {
  return {
    user: () => ({ uid: 1000, gid: 1000, name: "alice" }),
    podmanInfo: async () => ({
      host: {
        cgroupVersion: controllers.length > 0 ? "v2" : "v1",
        slirp4netns: { executable: "/usr/bin/slirp4netns" },
      },
      version: { Version: "4.9.3" },
    }),
    readText: async () => "alice:100000:65536\n",
    exists: async () => true,
    canReadWrite: async () => true,
    delegatedControllers: () => controllers,
  };
}

const shared = {
  image: { kind: "bundled" as const },
  cacheDir: "/nonexistent/cache",
  dataDir: "/nonexistent/data",
};

function spec(user?: { uid: number; gid: number }) {
  return runSpecSchema.parse({
    workspace: "/home/alice/src/app",
    home: "/home/alice/.local/share/claude-bottle/projects/app/home",
    command: ["claude"],
    name: "claude-bottle-app-1a2b3c",
    ...(user && { user }),
  });
}

describe("podman backend", () => {
  it("declares the Docker bottle's guarantees, and only the limits the user's cgroup controllers allow", () => {
    expect(podman({ ...shared, host: host() }).capabilities).toEqual({
      credentials: true,
      egress: true,
      denialLog: true,
      user: true,
      resources: { cpus: false, memoryMiB: false, pids: false },
      readOnlyPaths: true,
      hostPorts: true,
      publish: true,
    });
    expect(podman({ ...shared, host: host(["memory", "pids"]) }).capabilities?.resources).toEqual({
      cpus: false,
      memoryMiB: true,
      pids: true,
    });
  });

  it("reports availability with Podman's version and what the user should know", async () => {
    expect(await podman({ ...shared, host: host() }).checkAvailability()).toEqual({
      available: true,
      version: "Podman 4.9.3",
      notes: [expect.stringContaining("cgroup v1")],
    });
  });

  it("refuses to start anything where Podman cannot run, with the availability check's reason and fix", async () => {
    const root = { ...host(), user: () => ({ uid: 0, gid: 0, name: "root" }) };
    const error = await podman({ ...shared, host: root })
      .prepare("claude-bottle:latest")
      .catch((caught: unknown) => caught);
    expect(BottleError.is(error) && error.code).toBe("BACKEND_UNAVAILABLE");
    expect((error as BottleError).hint).toMatch(/regular user/);
  });
});

describe("asInvokingUser", () => {
  it("runs a spec that names no user as the invoking user, not as the image's own", () => {
    expect(asInvokingUser(spec(), host()).user).toEqual({ uid: 1000, gid: 1000 });
  });

  it("keeps the invoking user, and refuses any other in one line that says why", () => {
    expect(asInvokingUser(spec({ uid: 1000, gid: 1000 }), host()).user).toEqual({ uid: 1000, gid: 1000 });
    expect(() => asInvokingUser(spec({ uid: 1001, gid: 1000 }), host())).toThrow(
      /runs the bottle as you \(1000:1000\), not as 1001:1000/,
    );
    expect(() => asInvokingUser(spec({ uid: 1000, gid: 27 }), host())).toThrow(BottleError);
  });
});
