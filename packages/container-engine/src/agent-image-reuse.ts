/**
 * A container backend's bundled agent image, reused while nothing it is built from has changed. A
 * warm `docker build` of the bundled Dockerfile finds every layer cached and makes the same image
 * again, but it costs some 65 ms of the engine's time before every run. So after a build, what went
 * into it is remembered under the cache folder: the Dockerfile and the CA certificates as they were
 * (by their hash), the build arguments and labels, the tag, the engine, and the id of the base
 * image it was built on. The next `prepare` with the same inputs asks the engine one question
 * instead (`image inspect` of the tag and the base): when the tag still names the image built then
 * and the base is the same image, that image is what the build would make, and it is used as it is.
 * Anything else (an edited Dockerfile or CA file, another Claude Code version, a base pulled anew, a
 * tag removed or moved, another engine) builds as before.
 *
 * Only the bundled image (two small files of context): a Dockerfile of the user's has a context of
 * any size, and smolmachines, which converts the image on a cache miss, builds every time as its
 * pipeline says.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomically } from "@claude-bottle/core/files";
import type { ImageEngine } from "./image-engine.js";

/** What a bundled build is made of, as `buildAgentImage` runs it. */
export interface BundledBuildInputs {
  tag: string;
  base: string;
  dockerfile: string;
  caCerts: string;
  buildArgs: Readonly<Record<string, string>>;
  labels: Readonly<Record<string, string>>;
}

/** Where the builds of a cache folder are remembered, and for which inputs. */
export interface BuildMemory {
  cacheDir: string;
}

interface Remembered {
  imageId: string;
  baseId: string;
}

/** The file that remembers the build of `inputs` on `engine`. */
function recordOf(memory: BuildMemory, engine: ImageEngine, inputs: BundledBuildInputs): string {
  const hash = createHash("sha256");
  // The engine: which CLI, and where it points (another engine has other images under the same tag).
  const env = engine.env ?? process.env;
  for (const part of [
    engine.flavor.name,
    ...engine.commandLine([]),
    env.DOCKER_HOST ?? "",
    env.DOCKER_CONTEXT ?? "",
    env.CONTAINER_HOST ?? "",
    JSON.stringify(inputs),
  ])
    hash.update(`${part}\0`);
  return join(memory.cacheDir, engine.flavor.name, "agent-builds", hash.digest("hex").slice(0, 32));
}

/** The image `inputs` built last time, if the engine still has it under its tag on the same base. */
export async function reusableBuild(
  engine: ImageEngine,
  memory: BuildMemory,
  inputs: BundledBuildInputs,
): Promise<string | undefined> {
  const remembered = rememberedFor(recordOf(memory, engine, inputs));
  if (!remembered) return undefined;
  const ids = (await engine.imageIds([inputs.tag, inputs.base]))?.map(bare);
  return ids?.[0] === bare(remembered.imageId) && ids[1] === bare(remembered.baseId)
    ? remembered.imageId
    : undefined;
}

/**
 * Remember that `inputs` built `imageId`. Asks the engine for the base's id; a failure only means
 * the next run builds again.
 */
export async function rememberBuild(
  engine: ImageEngine,
  memory: BuildMemory,
  inputs: BundledBuildInputs,
  imageId: string,
): Promise<void> {
  const [baseId] = (await engine.imageIds([inputs.base])) ?? [];
  if (!baseId) return;
  const path = recordOf(memory, engine, inputs);
  await mkdir(join(path, ".."), { recursive: true });
  await writeFileAtomically(path, JSON.stringify({ imageId, baseId } satisfies Remembered));
}

/**
 * What the record says, read synchronously: the engine's question then goes out in the turn of the
 * event loop `prepare` was called in, ahead of the run's setup (see buildAgentImage).
 */
function rememberedFor(path: string): Remembered | undefined {
  try {
    const remembered = JSON.parse(readFileSync(path, "utf8")) as Partial<Remembered>;
    return typeof remembered.imageId === "string" && typeof remembered.baseId === "string"
      ? { imageId: remembered.imageId, baseId: remembered.baseId }
      : undefined;
  } catch {
    return undefined;
  }
}

/** An image id without its `sha256:` (Podman's `inspect` leaves it out). */
function bare(id: string): string {
  return id.replace(/^sha256:/, "");
}
