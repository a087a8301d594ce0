/**
 * What a container bottle boots, made by `prepare` on any engine: the agent image, and beside it
 * the gateway's image and the relay's file. The gateway's image is claude-bottle's own, built from
 * the Node base, never from the agent image, which the user or the project may define.
 */
import { defaults, type PrepareOptions, type SharedBackendOptions } from "@claude-bottle/core";
import type { RelayStart } from "@claude-bottle/gateway";
import { buildAgentImage, readCaCerts } from "./agent-image.js";
import { ensureGatewayImage } from "./gateway-image.js";
import type { ImageEngine } from "./image-engine.js";
import { checkRelayRuns } from "./relay-check.js";
import { relayFileIn } from "./relay-file.js";

/** What `prepare` hands to `run`: the agent image's id, the gateway image's tag, the relay's file. */
export interface PreparedBottleImages {
  imageId: string;
  imageRef: string;
  gatewayImage: string;
  /** The relay's program on the host (relay-file.ts), mounted into each bottle. */
  relayFile: string;
  /**
   * How the bottle starts its relay (the gateway package's bottleBootstrap): with Perl in the
   * bundled image, whose Debian base always has it; with Node alone in an image of the user's.
   */
  relayStart: RelayStart;
}

export async function prepareBottleImages(
  engine: ImageEngine,
  options: Pick<SharedBackendOptions, "image" | "helperImage" | "cacheDir">,
  imageRef: string,
  prepareOptions: PrepareOptions = {},
): Promise<PreparedBottleImages> {
  const { signal, progress } = prepareOptions;
  const step = <T>(title: string, work: () => Promise<T>) => (progress ? progress.step(title, work) : work());
  const output = { ...(signal && { signal }), ...(progress?.detail && { onOutput: progress.detail }) };
  const source = options.image;
  const bundled = source.kind === "bundled" ? source : undefined;
  const caFile = options.helperImage?.extraCaCerts ?? bundled?.extraCaCerts;
  // Read before anything starts: a CA file that cannot be read stops `prepare` at once.
  const gatewaySource = {
    base: options.helperImage?.base ?? bundled?.base ?? defaults.baseImage,
    ...(caFile && { extraCaCerts: readCaCerts(caFile) }),
  };
  // On a warm run the gateway's image exists already and its check is one `image inspect`, hidden
  // behind the agent image's build. The build goes first, being the longer (its process starts in
  // this turn of the event loop, see buildAgentImage); the check's inspect starts right after it.
  const building = step("build agent image", () =>
    buildAgentImage(engine, imageRef, source, { ...output, memory: { cacheDir: options.cacheDir } }),
  );
  const gateway = ensureGatewayImage(engine, gatewaySource, output);
  gateway.catch(() => {});
  const relayFile = relayFileIn(options.cacheDir);
  relayFile.catch(() => {});
  const imageId = await building;
  const gatewayImage = await step("gateway image", () => gateway);
  // The relay inside the bottle needs node; the bundled image has it, another image may not.
  if (source.kind !== "bundled") await checkRelayRuns(engine, imageId, imageRef, options.cacheDir);
  return {
    imageId,
    imageRef,
    gatewayImage,
    relayFile: await relayFile,
    relayStart: source.kind === "bundled" ? "perl" : "node",
  };
}
