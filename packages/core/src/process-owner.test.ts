import { hostname } from "node:os";
import { describe, expect, it } from "vitest";
import { currentOwner, ownerIsDead, processExists } from "./process-owner.js";

describe("ownerIsDead", () => {
  const probe = { host: "here", bootId: "boot-a", isAlive: (pid: number) => pid === 100 };

  it("is dead when its pid is gone or it ran in another boot, on this host", () => {
    expect(ownerIsDead({ pid: 100, bootId: "boot-a", host: "here" }, probe)).toBe(false);
    expect(ownerIsDead({ pid: 101, bootId: "boot-a", host: "here" }, probe)).toBe(true);
    // The same pid after a reboot is another process.
    expect(ownerIsDead({ pid: 100, bootId: "boot-z", host: "here" }, probe)).toBe(true);
    // Without boot ids, the pid decides.
    expect(ownerIsDead({ pid: 100, host: "here" }, { ...probe, bootId: undefined })).toBe(false);
  });

  it("never judges an owner on another host", () => {
    expect(ownerIsDead({ pid: 101, bootId: "boot-z", host: "elsewhere" }, probe)).toBe(false);
  });
});

describe("this process as an owner", () => {
  it("is alive, on this host", async () => {
    const owner = await currentOwner();
    expect(owner).toMatchObject({ pid: process.pid, host: hostname() });
    expect(processExists(process.pid)).toBe(true);
  });
});
