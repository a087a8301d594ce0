// What the Podman backend's integration tests share: the backend on this user's real rootless
// Podman with the real agent image, the user the bottles run as (the invoking one: keep-id maps no
// other), and a few questions to Podman. The tests run as a regular user (scripts/podman-user.sh
// makes one in CI); test/global-setup.ts refuses to start them where rootless Podman does not work.
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { gatewayNames, ImageEngine, podmanFlavor } from "@claude-bottle/container-engine";
import {
  defaults,
  type RunResult,
  type RunSpec,
  type RunSpecInput,
  runSpecSchema,
} from "@claude-bottle/core";
import { afterAll, afterEach, beforeAll } from "vitest";
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
  // Runs a failed test left going are aborted, so they clean up after themselves.
  const inFlight = new Set<{ controller: AbortController; settled: Promise<unknown> }>();
  afterEach(async () => {
    for (const entry of inFlight) entry.controller.abort();
    await Promise.all([...inFlight].map((entry) => entry.settled));
  });
  return {
    backend,
    prepared: () => prepared!,
    async bottle(overrides = {}) {
      const root = await mkdtemp(join(scratch!, "b-"));
      const workspace = join(root, "workspace");
      const home = join(root, "home");
      await mkdir(workspace);
      await mkdir(home);
      const spec = runSpecSchema.parse({
        workspace,
        home,
        user: testUser,
        command: ["true"],
        name: `claude-bottle-test-${randomBytes(4).toString("hex")}`,
        ...overrides,
      });
      return { spec, workspace, home };
    },
    start(spec) {
      const controller = new AbortController();
      const run = backend.run(prepared!, spec, { signal: controller.signal });
      const entry = { controller, settled: run.catch(() => undefined) };
      inFlight.add(entry);
      void entry.settled.then(() => inFlight.delete(entry));
      return { run, controller };
    },
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

export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Resolves once the container `name` runs. */
export function running(name: string): Promise<true> {
  return until(`${name} to run`, async () =>
    (await engine.containerNames()).includes(name) ? true : undefined,
  );
}
