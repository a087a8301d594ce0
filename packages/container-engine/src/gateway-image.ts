/**
 * The gateway's image: a small image claude-bottle builds itself, from the configured Node base
 * (image.base) and the gateway's bundled code (dist/image in this package, built by tsdown). The
 * gateway holds the real credential, so it must be code claude-bottle ships, never the agent image,
 * which the user or the project may define.
 *
 * The code goes in through the build context, which works with every engine (a remote one, or the
 * VM of Docker Desktop, where a bind mount of claude-bottle's install folder would not). The tag is
 * a hash of everything that goes in, so a warm run finds the image with one `image inspect` and
 * never rebuilds it; a new claude-bottle version, base or CA file gets a new tag.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BottleError } from "@claude-bottle/core";
import { gatewayAppDir } from "@claude-bottle/gateway";
import type { ImageEngine } from "./image-engine.js";

export const gatewayImageRepository = "claude-bottle-gateway";

/** Where the gateway's programs (the gateway package's dist/image) are in its image. */
export const gatewayProgramsDir = "/opt/claude-bottle/gateway";
/** Label on the gateway image, so it can be told from agent images. */
export const gatewayImageLabel = "dev.claude-bottle.gateway-image";

export interface GatewayImageSource {
  /** A Node image (image.base). */
  base: string;
  /** PEM text of extra CA certificates for the gateway's own TLS connections (to the API). */
  extraCaCerts?: string;
}

function dockerfile(source: GatewayImageSource): string {
  const lines = [
    "# claude-bottle's gateway: the API forwarder and egress proxy beside a bottle (built by claude-bottle).",
    `FROM ${source.base}`,
    `COPY app/ ${gatewayProgramsDir}/`,
  ];
  if (source.extraCaCerts?.trim()) {
    lines.push(
      "COPY extra-ca-certificates.pem /opt/claude-bottle/extra-ca-certificates.pem",
      "ENV NODE_EXTRA_CA_CERTS=/opt/claude-bottle/extra-ca-certificates.pem",
    );
  }
  lines.push(`ENTRYPOINT ["node", "${gatewayProgramsDir}/main.mjs"]`, "");
  return lines.join("\n");
}

/**
 * The gateway's programs, read synchronously: about 0.5 MB from the page cache, a millisecond, so
 * that the image check's `image inspect` starts before the agent image's build rather than after
 * the reads, and ends long before the build does (a check that outlasted the build held the run).
 */
function appFiles(): { name: string; content: Buffer }[] {
  try {
    return readdirSync(gatewayAppDir)
      .filter((name) => name.endsWith(".mjs"))
      .sort()
      .map((name) => ({ name, content: readFileSync(join(gatewayAppDir, name)) }));
  } catch (error) {
    throw new BottleError("PREPARE_FAILED", `the gateway's code is missing from ${gatewayAppDir}`, {
      hint: "reinstall claude-bottle (from a checkout: pnpm build)",
      cause: error,
    });
  }
}

/** The gateway image's tag for `source`: the repository and a hash of everything that goes into it. */
export function gatewayImageTag(source: GatewayImageSource): string {
  const hash = createHash("sha256").update(dockerfile(source));
  for (const file of appFiles()) hash.update(`\0${file.name}\0`).update(file.content);
  hash.update(`\0${source.extraCaCerts ?? ""}`);
  return `${gatewayImageRepository}:${hash.digest("hex").slice(0, 20)}`;
}

/** Make sure the gateway image for `source` exists (building it when not); resolves with its tag. */
export async function ensureGatewayImage(
  engine: ImageEngine,
  source: GatewayImageSource,
  options: { signal?: AbortSignal; onOutput?: (line: string) => void } = {},
): Promise<string> {
  const tag = gatewayImageTag(source);
  if (await engine.imageExists(tag)) return tag;
  const context = await mkdtemp(join(tmpdir(), "claude-bottle-gateway-"));
  try {
    await writeFile(join(context, "Dockerfile"), dockerfile(source));
    await cp(gatewayAppDir, join(context, "app"), { recursive: true });
    await writeFile(join(context, "extra-ca-certificates.pem"), source.extraCaCerts ?? "");
    await engine.build({
      tag,
      context,
      labels: { [gatewayImageLabel]: "true" },
      ...(options.signal && { signal: options.signal }),
      ...(options.onOutput && { onOutput: options.onOutput }),
    });
    return tag;
  } finally {
    await rm(context, { recursive: true, force: true });
  }
}
