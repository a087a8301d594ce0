import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/**
 * The bundled gateway and relay (dist/image, built by tsdown), found through this package's
 * package.json: the same from sources, from the build and from the CLI's bundle. What the gateway
 * image is built from (container-engine's gateway-image.ts).
 */
export const gatewayAppDir = join(
  dirname(createRequire(import.meta.url).resolve("@claude-bottle/gateway/package.json")),
  "dist",
  "image",
);
