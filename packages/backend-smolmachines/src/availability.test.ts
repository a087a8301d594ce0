import { accessSync, constants } from "node:fs";
import { arch, platform } from "node:process";
import { BottleError } from "@claude-bottle/core";
import { describe, expect, it, vi } from "vitest";
import { type AvailabilityProbe, checkSmolmachinesAvailability, systemProbe } from "./availability.js";
import { smolmachines } from "./smolmachines-backend.js";

const errno = (code: string) => Object.assign(new Error(code), { code });

function probe(overrides: Partial<AvailabilityProbe> = {}): AvailabilityProbe {
  return {
    platform: "linux",
    arch: "x64",
    access: vi.fn(async () => {}),
    smolvmVersion: vi.fn(async () => "1.22.0"),
    ...overrides,
  };
}

describe("checkSmolmachinesAvailability", () => {
  it("is available on Linux with read-write /dev/kvm and smolvm, and reports smolvm's version", async () => {
    const p = probe();
    expect(await checkSmolmachinesAvailability(p)).toEqual({
      available: true,
      version:
        "smolvm 1.22.0 (cannot keep the API key outside the VM, which needs smolvm 1.22.2 or later: runs with a key only with credentials.passthrough)",
    });
    expect(
      await checkSmolmachinesAvailability(probe({ smolvmVersion: vi.fn(async () => "1.22.2") })),
    ).toEqual({ available: true, version: "smolvm 1.22.2 (keeps the API key outside the VM)" });
    expect(p.access).toHaveBeenCalledWith("/dev/kvm", constants.R_OK | constants.W_OK);
  });

  it("without /dev/kvm, says there is no KVM and how to get it", async () => {
    const result = await checkSmolmachinesAvailability(
      probe({ access: vi.fn(async () => Promise.reject(errno("ENOENT"))) }),
    );
    expect(result.available).toBe(false);
    expect(result.reason).toContain("/dev/kvm does not exist");
    expect(result.fix).toMatch(/modprobe kvm_intel|nested virtualization/);
    expect(result.fix).toContain("--backend docker");
  });

  it("with a /dev/kvm this user cannot open, says to join the kvm group", async () => {
    const result = await checkSmolmachinesAvailability(
      probe({ access: vi.fn(async () => Promise.reject(errno("EACCES"))) }),
    );
    expect(result).toMatchObject({
      available: false,
      reason: expect.stringContaining("cannot read and write"),
    });
    expect(result.fix).toContain("usermod -aG kvm");
  });

  it("on macOS needs Apple Silicon and does not look for /dev/kvm", async () => {
    const intel = probe({ platform: "darwin", arch: "x64" });
    expect(await checkSmolmachinesAvailability(intel)).toMatchObject({
      available: false,
      reason: expect.stringContaining("Apple Silicon"),
    });
    const arm = probe({ platform: "darwin", arch: "arm64" });
    expect(await checkSmolmachinesAvailability(arm)).toMatchObject({ available: true });
    expect(arm.access).not.toHaveBeenCalled();
  });

  it("says smolvm is missing and how to install it", async () => {
    const missing = new BottleError("BACKEND_UNAVAILABLE", "smolvm is not installed (no smolvm on PATH)", {
      hint: "install smolvm from https://github.com/smol-machines/smolvm and run again",
    });
    const result = await checkSmolmachinesAvailability(
      probe({ smolvmVersion: vi.fn(async () => Promise.reject(missing)) }),
    );
    expect(result).toMatchObject({ available: false, reason: "smolvm is not installed (no smolvm on PATH)" });
    expect(result.fix).toContain("install smolvm");
  });

  it("reports an unsupported platform", async () => {
    expect(await checkSmolmachinesAvailability(probe({ platform: "freebsd" }))).toMatchObject({
      available: false,
      reason: "smolvm does not run on freebsd",
    });
  });
});

describe("the real probe", () => {
  /** Whether this process can open /dev/kvm for reading and writing, asked of the OS directly. */
  function kvmUsable(): boolean {
    try {
      accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
      return true;
    } catch {
      return false;
    }
  }

  it("judges this machine by its own platform and its real /dev/kvm", async () => {
    const result = await checkSmolmachinesAvailability(systemProbe(async () => "1.22.0"));
    if (platform === "linux") {
      // Machines with and without KVM both run this test; the verdict must follow the device.
      expect(result.available).toBe(kvmUsable());
      if (!result.available) expect(result.reason).toContain("/dev/kvm");
    } else if (platform === "darwin") {
      expect(result.available).toBe(arch === "arm64");
    }
  });
});

describe("the backend's host option", () => {
  it("replaces the real host in checkAvailability", async () => {
    const access = vi.fn(async () => Promise.reject(errno("ENOENT")));
    const backend = smolmachines({
      image: { kind: "bundled" },
      cacheDir: "/nonexistent/cache",
      dataDir: "/nonexistent/data",
      host: { platform: "linux", arch: "x64", access },
    });
    const result = await backend.checkAvailability();
    expect(access).toHaveBeenCalledWith("/dev/kvm", constants.R_OK | constants.W_OK);
    expect(result).toMatchObject({
      available: false,
      reason: expect.stringContaining("/dev/kvm does not exist"),
    });
  });
});
