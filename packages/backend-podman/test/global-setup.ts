// vitest globalSetup for this package's integration tests: they run rootless Podman as the invoking
// user, so they refuse to start (fail, never skip) unless Podman works for that user and has the
// base image the tests build on. The shared setup (vitest.shared.ts) asks Docker instead.
import { ImageEngine, podmanFlavor } from "@claude-bottle/container-engine";
import { removeOrphanedWarmGateways } from "@claude-bottle/container-engine/testing";
import { defaults } from "@claude-bottle/core";
import { execa } from "execa";
import { assessPodman, systemPodmanHost } from "../src/availability.js";

export default async function setup(): Promise<() => Promise<void>> {
  const assessment = await assessPodman(systemPodmanHost());
  if (!assessment.available) {
    throw new Error(
      `The Podman backend's integration tests need rootless Podman working for this user: ${assessment.reason}. Fix: ${assessment.fix}. (As root in CI, scripts/podman-user.sh sets up a user for them.)`,
    );
  }
  const base = process.env.CLAUDE_BOTTLE_BASE_IMAGE || defaults.baseImage;
  const found = await execa("podman", ["image", "exists", base], {
    reject: false,
  });
  if (found.exitCode !== 0) {
    throw new Error(
      `The Podman backend's integration tests need the base image ${base} in this user's Podman storage. Load it (docker save ${base} | podman load) or set CLAUDE_BOTTLE_BASE_IMAGE.`,
    );
  }
  // Afterwards: the warm gateways of the tests' projects, whose folders the tests removed.
  return () => removeOrphanedWarmGateways(new ImageEngine({ flavor: podmanFlavor }));
}
