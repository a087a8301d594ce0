// What the Podman backend's integration tests share: the backend on this user's real rootless
// Podman with the real agent image, the user the bottles run as (the invoking one: keep-id maps no
// other), and a few questions to Podman. The tests run as a regular user (scripts/podman-user.sh
// makes one in CI); test/global-setup.ts refuses to start them where rootless Podman does not work.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { gatewayNames, ImageEngine, podmanFlavor } from "@claude-bottle/container-engine";
import { newTestBottle, until, useBackgroundRuns } from "@claude-bottle/container-engine/testing";
import { defaults, type RunResult, type RunSpec, type RunSpecInput } from "@claude-bottle/core";
import { afterAll, beforeAll } from "vitest";
import { type PodmanOptions, type PreparedPodmanImage, podman } from "../src/index.js";

export const baseImage = process.env.CLAUDE_BOTTLE_BASE_IMAGE || defaults.baseImage;
export const imageRef = "claude-bottle-test-agent:latest";
/** The invoking user: the only one rootless Podman maps onto itself in a bottle. */
export const testUser = { uid: userInfo().uid, gid: userInfo().gid };
/** Podman, for the tests' own questions (listing needs no runtime override). */
export const engine = new ImageEngine({ flavor: podmanFlavor });

const cacheDir = join(tmpdir(), `cb-podman-cache-${testUser.uid}`);
export const baseOptions = {
  image: { kind: "bundled", base: baseImage, extraCaCerts: process.env.NODE_EXTRA_CA_CERTS },
  cacheDir,
  dataDir: join(tmpdir(), `cb-podman-data-${testUser.uid}`),
  helperImage: { base: baseImage },
} satisfies PodmanOptions;

export interface PodmanTestKit {
  backend: ReturnType<typeof podman>;
  prepared(): PreparedPodmanImage;
  /** A fresh workspace and home, and a RunSpec using them under a unique name. */
  bottle(overrides?: Partial<RunSpecInput>): Promise<{ spec: RunSpec; workspace: string; home: string }>;
  /** Start a run in the background; the test awaits `run` itself. */
  start(spec: RunSpec): { run: Promise<RunResult>; controller: AbortController };
}

export function usePodmanBackend(extra: Partial<PodmanOptions> = {}): PodmanTestKit {
  const backend = podman({ ...baseOptions, ...extra });
  let scratch: string | undefined;
  let prepared: PreparedPodmanImage | undefined;
  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "cb-podman-it-"));
    prepared = await backend.prepare(imageRef);
  });
  afterAll(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });
  const { start } = useBackgroundRuns(backend, () => prepared!);
  return {
    backend,
    prepared: () => prepared!,
    bottle: (overrides = {}) => newTestBottle(scratch!, { user: testUser, overrides }),
    start,
  };
}

export function sh(script: string): string[] {
  return ["sh", "-c", script];
}

/** What a bottle called `name` may leave behind: its container, its gateway, their volumes. */
export async function leftoversOf(name: string): Promise<string[]> {
  const { container, volume, outVolume } = gatewayNames(name);
  const containers = (await engine.containerNames()).filter((line) => line === name || line === container);
  const volumes = (await engine.volumeNames()).filter((line) => line === volume || line === outVolume);
  return [...containers, ...volumes.map((line) => `volume ${line}`)];
}

export { until };

/** Resolves once the container `name` runs. */
export function running(name: string): Promise<true> {
  return until(
    `${name} to run`,
    async () => ((await engine.containerNames()).includes(name) ? true : undefined),
    60_000,
  );
}
