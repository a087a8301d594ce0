/**
 * What integration tests need from the machine: a Docker engine that answers, and the images they
 * build on. Tests get image names from the same settings users have (CLAUDE_BOTTLE_BASE_IMAGE,
 * CLAUDE_BOTTLE_REGISTRY_IMAGE), so a machine without Docker Hub points them at local images.
 */
import { defaults } from "../config-schema.js";
import { ImageEngine } from "../image-engine.js";

export interface IntegrationEnvironment {
  engine: ImageEngine;
  /** Base image for the bundled agent Dockerfile. */
  baseImage: string;
  /** Image of the ephemeral registry. */
  registryImage: string;
}

export function integrationEnvironment(env: NodeJS.ProcessEnv = process.env): IntegrationEnvironment {
  return {
    engine: new ImageEngine(),
    baseImage: env.CLAUDE_BOTTLE_BASE_IMAGE || defaults.baseImage,
    registryImage: env.CLAUDE_BOTTLE_REGISTRY_IMAGE || defaults.registryImage,
  };
}

/**
 * Fail loudly, never skip, when the engine or an image is missing: an integration test that did
 * not run is not a passing test.
 */
export async function assertIntegrationEnvironment(environment = integrationEnvironment()): Promise<void> {
  const { engine } = environment;
  try {
    await engine.serverVersion();
  } catch (error) {
    throw new Error(
      "Integration tests need a running Docker engine and none answers. Start one (scripts/docker-engine.sh does on Debian) or run only the unit tests with `pnpm test:unit`.",
      { cause: error },
    );
  }
  const missing: string[] = [];
  for (const image of [environment.baseImage, environment.registryImage]) {
    if (!(await engine.imageExists(image))) missing.push(image);
  }
  if (missing.length > 0) {
    throw new Error(
      `Integration tests need these images and the engine has none of them: ${missing.join(", ")}. Pull them, or build local stand-ins with scripts/local-images.sh and set CLAUDE_BOTTLE_BASE_IMAGE / CLAUDE_BOTTLE_REGISTRY_IMAGE.`,
    );
  }
}
