/**
 * The smolmachines prepare pipeline: build the agent image with Docker, then convert it into a
 * packed smolvm artifact, cached by image digest.
 *
 *   build (always) → image id → cache hit? return the sidecar
 *                              → miss: ephemeral registry → tag → push → pack → sidecar
 */
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  type EphemeralRegistry,
  type ImageEngine,
  localRegistryRef,
  type ProgressReporter,
  silentProgress,
} from "@claude-bottle/core";
import type { SmolvmCli } from "./smolvm-cli.js";

export interface EnsureSmolmachineDeps {
  /** `<cache root>/smolmachines` */
  cacheDir: string;
  /** Builds the agent image as `imageRef` (every time: a cached build is cheap, and edits land). */
  buildImage(imageRef: string): Promise<void>;
  engine: Pick<ImageEngine, "imageId" | "tag" | "push">;
  /** Starts a throwaway registry on 127.0.0.1; released when the pipeline is done with it. */
  openRegistry(): Promise<EphemeralRegistry>;
  smolvm: Pick<SmolvmCli, "packCreate">;
  progress?: ProgressReporter;
}

/** The cache key: the first 16 hex characters of the image id after `sha256:`. */
export function imageDigest(imageId: string): string {
  const hex = imageId.replace(/^sha256:/, "");
  if (!/^[0-9a-f]{16}/.test(hex)) throw new Error(`not an image id: ${imageId}`);
  return hex.slice(0, 16);
}

/** An image reference's repository, without registry host, tag or digest: `ghcr.io/acme/agent:1` → `acme/agent`. */
export function repositoryName(imageRef: string): string {
  let rest = imageRef.split("@", 1)[0]!;
  const parts = rest.split("/");
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    parts.shift();
  }
  rest = parts.join("/");
  const colon = rest.lastIndexOf(":");
  return colon > rest.lastIndexOf("/") ? rest.slice(0, colon) : rest;
}

export const stubFileName = (digest: string) => `${digest}.smolmachine`;
export const sidecarFileName = (digest: string) => `${digest}.smolmachine.smolmachine`;

/** Returns the path of the packed sidecar for `imageRef`'s current build. */
export async function ensureSmolmachine(imageRef: string, deps: EnsureSmolmachineDeps): Promise<string> {
  const progress = deps.progress ?? silentProgress;
  await progress.step("build agent image", () => deps.buildImage(imageRef));
  const digest = imageDigest(await deps.engine.imageId(imageRef));
  const sidecar = join(deps.cacheDir, sidecarFileName(digest));
  if (await exists(sidecar)) return sidecar;

  await mkdir(deps.cacheDir, { recursive: true });
  await using registry = await progress.step("start local registry", () => deps.openRegistry());
  const localRef = localRegistryRef(registry.port, repositoryName(imageRef), digest);
  await progress.step("tag", () => deps.engine.tag(imageRef, localRef));
  await progress.step("push to local registry", () => deps.engine.push(localRef));
  await progress.step("pack with smolvm", () =>
    deps.smolvm.packCreate(localRef, join(deps.cacheDir, stubFileName(digest))),
  );
  return sidecar;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
