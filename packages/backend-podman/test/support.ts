import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { gatewayNames, ImageEngine, podmanFlavor } from "@claude-bottle/container-engine";
import { newTestBottle, until, usePreparedBackend } from "@claude-bottle/container-engine/testing";
import { defaults, type RunResult, type RunSpec, type RunSpecInput } from "@claude-bottle/core";
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
  const kit = usePreparedBackend(backend, imageRef, "cb-podman-it-");
  return {
    backend,
    prepared: kit.prepared,
    bottle: (overrides = {}) => newTestBottle(kit.scratch(), { user: testUser, overrides }),
    start: kit.start,
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
