// What the Docker backend's integration tests share: the backend on the real engine with the real
// agent image, fresh workspaces and homes, runs in the background that are aborted when a test
// fails midway, and a few questions to the engine.
import { randomBytes } from "node:crypto";
import { chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { gatewayNames } from "@claude-bottle/container-engine";
import { integrationEnvironment } from "@claude-bottle/container-engine/testing";
import { type RunResult, type RunSpec, type RunSpecInput, runSpecSchema } from "@claude-bottle/core";
import { afterAll, afterEach, beforeAll } from "vitest";
import { type DockerOptions, docker, type PreparedDockerImage } from "../src/index.js";

export const { engine, baseImage, registryImage } = integrationEnvironment();
export const imageRef = "claude-bottle-test-agent:latest";
/** The host user bottles run as unless a test says otherwise: neither root nor the image's claude. */
export const testUser = { uid: 4242, gid: 4343 };

export const baseOptions = {
  image: { kind: "bundled", base: baseImage, extraCaCerts: process.env.NODE_EXTRA_CA_CERTS },
  cacheDir: "/nonexistent/cache",
  dataDir: "/nonexistent/data",
  engine,
  helperImage: { base: baseImage },
} satisfies DockerOptions;

export interface DockerTestKit {
  backend: ReturnType<typeof docker>;
  /** The agent image, prepared once for the file. */
  prepared(): PreparedDockerImage;
  /** A folder removed after the file's tests. */
  scratch(): string;
  /** A fresh workspace and home owned by `owner`, and a RunSpec using them under a unique name. */
  bottle(
    overrides?: Partial<RunSpecInput>,
    owner?: { uid: number; gid: number },
    folder?: string,
  ): Promise<{ spec: RunSpec; workspace: string; home: string }>;
  /** Start a run in the background; the test awaits `run` itself. */
  start(spec: RunSpec): { run: Promise<RunResult>; controller: AbortController };
}

/** Register the file's hooks and return the kit. `extra` adds backend options (a resolver, say). */
export function useDockerBackend(extra: Partial<DockerOptions> = {}): DockerTestKit {
  const backend = docker({ ...baseOptions, ...extra });
  let scratch: string | undefined;
  let prepared: PreparedDockerImage | undefined;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "cb-docker-it-"));
    prepared = await backend.prepare(imageRef);
  });
  afterAll(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  // Runs a test left going (it failed midway) are aborted afterwards, so they clean up after themselves.
  const inFlight = new Set<{ controller: AbortController; settled: Promise<unknown> }>();
  afterEach(async () => {
    for (const entry of inFlight) entry.controller.abort();
    await Promise.all([...inFlight].map((entry) => entry.settled));
  });

  return {
    backend,
    prepared: () => prepared!,
    scratch: () => scratch!,
    async bottle(overrides = {}, owner = testUser, folder = "workspace") {
      const root = await mkdtemp(join(scratch!, "b-"));
      const workspace = join(root, folder);
      const home = join(root, "home");
      for (const dir of [workspace, home]) {
        await mkdir(dir);
        await chown(dir, owner.uid, owner.gid);
      }
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

export async function containersNamed(name: string): Promise<string[]> {
  const out = await engine.exec(
    ["ps", "--all", "--filter", `name=${name}`, "--format", "{{.Names}}"],
    "RUN_FAILED",
    "listing",
  );
  return out.split("\n").filter((line) => line === name);
}

/** What a bottle called `name` may leave on the engine: its container, its gateway, their volume. */
export async function leftoversOf(name: string): Promise<string[]> {
  const { container, volume } = gatewayNames(name);
  const containers = await engine.exec(
    ["ps", "--all", "--filter", `name=${name}`, "--format", "{{.Names}}"],
    "RUN_FAILED",
    "listing",
  );
  const volumes = await engine.exec(
    ["volume", "ls", "--filter", `name=${volume}`, "--format", "{{.Name}}"],
    "RUN_FAILED",
    "listing",
  );
  return [
    ...containers.split("\n").filter((line) => line === name || line === container),
    ...volumes
      .split("\n")
      .filter((line) => line === volume)
      .map((line) => `volume ${line}`),
  ];
}

export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** `docker inspect` of the container once it runs. */
export async function running(name: string): Promise<Record<string, unknown>> {
  return until(`${name} to run`, async () => {
    if ((await containersNamed(name)).length === 0) return undefined;
    const inspect = await engine.inspect(name).catch(() => undefined);
    return (inspect?.State as { Running?: boolean } | undefined)?.Running ? inspect : undefined;
  });
}
