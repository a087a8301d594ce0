import { gatewayNames } from "@claude-bottle/container-engine";
import {
  integrationEnvironment,
  newTestBottle,
  runsServedBy as runsServedByGateway,
  until,
  usePreparedBackend,
  warmGatewayOf as warmGatewayRunning,
} from "@claude-bottle/container-engine/testing";
import type { RunResult, RunSpec, RunSpecInput } from "@claude-bottle/core";
import { type DockerOptions, docker, type PreparedDockerImage } from "../src/index.js";

export { until };

export const { engine, baseImage } = integrationEnvironment();
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
  const kit = usePreparedBackend(backend, imageRef, "cb-docker-it-");
  return {
    backend,
    prepared: kit.prepared,
    scratch: kit.scratch,
    bottle: (overrides = {}, owner = testUser, folder = "workspace") =>
      newTestBottle(kit.scratch(), { user: testUser, overrides, owner, folder }),
    start: kit.start,
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

/** The name of the warm gateway serving `workspace`'s runs, once there is one. */
export function warmGatewayOf(workspace: string): Promise<string> {
  return until(`the warm gateway of ${workspace}`, () => warmGatewayRunning(workspace, engine));
}

/** The run folders a warm gateway has sockets in: the runs it serves now. */
export function runsServedBy(gateway: string): Promise<string[]> {
  return runsServedByGateway(gateway, engine);
}

/** `docker inspect` of the container once it runs. */
export async function running(name: string): Promise<Record<string, unknown>> {
  return until(`${name} to run`, async () => {
    if ((await containersNamed(name)).length === 0) return undefined;
    const inspect = await engine.inspect(name).catch(() => undefined);
    return (inspect?.State as { Running?: boolean } | undefined)?.Running ? inspect : undefined;
  });
}
