/**
 * A throwaway OCI registry: a registry container bound to 127.0.0.1 on a port the kernel picks.
 * Runtimes that can only pull by reference (smolvm's `pack create`) read freshly built images from it.
 * It counts as ready once `GET /v2/` answers, and it is removed when released, on errors too.
 *
 *   await using registry = await startEphemeralRegistry(engine, { image });
 *   await engine.push(localRegistryRef(registry.port, "claude-bottle", digest));
 *
 * A process killed while it holds one (kill -9, a crash) cannot remove it. Each registry therefore
 * carries its owner (pid, boot id, host) in labels, and `sweepOrphanedRegistries` removes those
 * whose owner is certainly gone; backends call it before they start a registry of their own, and
 * `claude-bottle cache prune` calls it too.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { BottleError } from "@claude-bottle/core";
import {
  currentOwner,
  type OwnerProbe,
  ownerIsDead,
  type ProcessOwner,
  systemOwnerProbe,
} from "@claude-bottle/core/process-owner";
import { engineFailure } from "./engine-output.js";
import type { ImageEngine } from "./image-engine.js";

/** The label on registry containers (value "registry"); bottles carry the same key with "bottle". */
export const registryLabel = "dev.claude-bottle.role";

/** Labels naming the process that owns a registry, so a later run can tell an orphan. */
export const registryOwnerLabels = {
  pid: "dev.claude-bottle.owner-pid",
  bootId: "dev.claude-bottle.owner-boot-id",
  host: "dev.claude-bottle.owner-host",
} as const;

export interface EphemeralRegistryOptions {
  /** The registry image (default registry:2, config `registry.image`, env CLAUDE_BOTTLE_REGISTRY_IMAGE). */
  image: string;
  /** How long to wait for `GET /v2/` to answer (default 30 s). */
  readyTimeoutMs?: number;
  signal?: AbortSignal;
  /** Who removes it (default: this process). */
  owner?: ProcessOwner;
}

export interface EphemeralRegistry extends AsyncDisposable {
  /** The port on 127.0.0.1 the registry listens on. */
  readonly port: number;
  /** The registry container's name. */
  readonly container: string;
  /** Remove the registry container (idempotent). */
  close(): Promise<void>;
}

/** The reference of image `name:tag` in a registry on this machine's loopback. */
export function localRegistryRef(port: number, name: string, tag: string): string {
  return `localhost:${port}/${name}:${tag}`;
}

export async function startEphemeralRegistry(
  engine: ImageEngine,
  options: EphemeralRegistryOptions,
): Promise<EphemeralRegistry> {
  const container = `claude-bottle-registry-${randomBytes(4).toString("hex")}`;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await engine.removeContainer(container);
  };
  const owner = options.owner ?? (await currentOwner());
  try {
    await engine.exec(
      [
        "run",
        "--detach",
        "--name",
        container,
        "--label",
        `${registryLabel}=registry`,
        "--label",
        `${registryOwnerLabels.pid}=${owner.pid}`,
        ...(owner.bootId ? ["--label", `${registryOwnerLabels.bootId}=${owner.bootId}`] : []),
        "--label",
        `${registryOwnerLabels.host}=${owner.host}`,
        // What it stores lives as long as the container: memory is faster than the engine's disk.
        "--tmpfs",
        "/var/lib/registry",
        "--publish",
        "127.0.0.1::5000",
        options.image,
      ],
      "REGISTRY_FAILED",
      `starting the local registry from ${options.image}`,
      { cancelSignal: options.signal },
    );
    const mapping = await engine.exec(
      ["port", container, "5000/tcp"],
      "REGISTRY_FAILED",
      "reading the registry's port",
    );
    const port = Number(/:(\d+)\s*$/m.exec(mapping)?.[1]);
    if (!Number.isInteger(port) || port <= 0) {
      throw new BottleError("REGISTRY_FAILED", `could not read the local registry's port from "${mapping}"`);
    }
    await waitUntilReady(engine, container, port, options.readyTimeoutMs ?? 30_000, options.signal);
    return {
      port,
      container,
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (error) {
    await close().catch(() => {});
    throw withRegistryHint(error, options.image);
  }
}

/**
 * Remove the registry containers whose owner is certainly gone (see process-owner.ts); returns
 * their names. Registries without owner labels (from before they were labelled) and those of live
 * owners or of other hosts are left alone.
 */
export async function sweepOrphanedRegistries(engine: ImageEngine, probe?: OwnerProbe): Promise<string[]> {
  const registries = await engine.listContainers({ [registryLabel]: "registry" });
  const judge = probe ?? (await systemOwnerProbe());
  const orphans = registries.filter((registry) => {
    const owner = ownerOf(registry.labels);
    return owner !== undefined && ownerIsDead(owner, judge);
  });
  for (const orphan of orphans) {
    await removeLocalTags(engine, orphan.name);
    await engine.removeContainer(orphan.name);
  }
  return orphans.map((orphan) => orphan.name);
}

/**
 * The tags a killed owner made for its push to this registry: `localhost:PORT/…:<16 hex digits>`
 * (see localRegistryRef), PORT being the one this registry still holds, so nothing else can have
 * published there since. Removing a tag never removes the image under it while the image has its
 * own name, which the image claude-bottle tagged from always has.
 */
async function removeLocalTags(engine: ImageEngine, container: string): Promise<void> {
  const mapping = await engine
    .exec(["port", container, "5000/tcp"], "REGISTRY_FAILED", "reading an orphaned registry's port")
    .catch(() => "");
  const port = /:(\d+)\s*$/m.exec(mapping)?.[1];
  if (!port) return;
  const refs = await engine.exec(
    ["images", "--format", "{{.Repository}}:{{.Tag}}"],
    "REGISTRY_FAILED",
    "listing images",
  );
  const ours = new RegExp(`^localhost:${port}/[^:]+:[0-9a-f]{16}$`);
  for (const ref of refs.split("\n").filter((line) => ours.test(line))) {
    await engine.removeImage(ref).catch(() => {});
  }
}

function ownerOf(labels: Record<string, string>): ProcessOwner | undefined {
  const pid = Number(labels[registryOwnerLabels.pid]);
  const host = labels[registryOwnerLabels.host];
  if (!Number.isInteger(pid) || pid <= 0 || !host) return undefined;
  const bootId = labels[registryOwnerLabels.bootId];
  return { pid, host, ...(bootId && { bootId }) };
}

/** Callback form: the registry lives exactly as long as `work`. */
export async function withEphemeralRegistry<T>(
  engine: ImageEngine,
  options: EphemeralRegistryOptions,
  work: (registry: EphemeralRegistry) => Promise<T>,
): Promise<T> {
  await using registry = await startEphemeralRegistry(engine, options);
  return await work(registry);
}

async function waitUntilReady(
  engine: ImageEngine,
  container: string,
  port: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    signal?.throwIfAborted();
    try {
      const response = await fetch(`http://127.0.0.1:${port}/v2/`, { signal: AbortSignal.timeout(2_000) });
      // 401 is a registry that wants credentials: it answers, so it is ready.
      if (response.ok || response.status === 401) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await sleep(100, undefined, { signal });
  }
  const logs = await engine
    .exec(["logs", "--tail", "20", container], "REGISTRY_FAILED", "reading the registry's logs", {
      all: true,
    })
    .catch(() => "");
  throw new BottleError(
    "REGISTRY_FAILED",
    `the local registry did not answer GET /v2/ within ${Math.round(timeoutMs / 1000)} s (${last})${logs ? `:\n${logs}` : ""}`,
    { hint: "check that the registry image serves the OCI distribution API on port 5000" },
  );
}

function withRegistryHint(error: unknown, image: string): unknown {
  if (!BottleError.is(error) || error.code !== "REGISTRY_FAILED" || error.hint) return error;
  const message = String((error.cause as { stderr?: unknown } | undefined)?.stderr ?? error.message);
  if (engineFailure(message) === "image-unavailable") {
    return new BottleError(
      "REGISTRY_FAILED",
      `the registry image ${image} is not available: ${lastLine(message)}`,
      {
        hint: "pull it, or set registry.image in config (or CLAUDE_BOTTLE_REGISTRY_IMAGE) to a registry image you have",
        cause: error,
      },
    );
  }
  return error;
}

function lastLine(text: string): string {
  const lines = text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  return lines.at(-1) ?? text;
}
