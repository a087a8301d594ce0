/**
 * The relay that connects a bottle to its gateway runs on the agent image's `node`. The bundled
 * image has it; an image the user brings (`image.dockerfile`, `image.use`) may not, and a bottle
 * whose relay cannot run would have no way out at all. So such an image is tried once, before its
 * first run, and refused with one line if `node` is missing; a success is remembered per image id
 * under the cache folder, so later runs pay nothing.
 */
import { mkdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BottleError } from "@claude-bottle/core";
import type { ImageEngine } from "./image-engine.js";

export async function checkRelayRuns(
  engine: ImageEngine,
  imageId: string,
  imageRef: string,
  cacheDir: string,
): Promise<void> {
  const marker = join(cacheDir, engine.flavor.name, "relay-checked", imageId.replace(/^sha256:/, ""));
  if (
    await stat(marker).then(
      () => true,
      () => false,
    )
  )
    return;
  try {
    await engine.exec(
      [
        "run",
        ...engine.runOptions,
        "--rm",
        "--network",
        "none",
        "--log-driver",
        "none",
        "--entrypoint",
        "node",
        imageId,
        "-e",
        "0",
      ],
      "PREPARE_FAILED",
      `checking that ${imageRef} has node`,
    );
  } catch (error) {
    if (BottleError.is(error) && error.code === "ENGINE_UNREACHABLE") throw error;
    throw new BottleError("PREPARE_FAILED", `the image ${imageRef} has no working \`node\` on its PATH`, {
      backend: engine.flavor.name,
      hint: "the bottle's network relay runs on Node.js (18 or later): base the image on a Node image or install node in it",
      cause: error,
    });
  }
  // Remembering is an optimisation only: a cache folder that cannot be written costs a check per run.
  await mkdir(join(marker, ".."), { recursive: true })
    .then(() => writeFile(marker, ""))
    .catch(() => undefined);
}
