/**
 * What integration tests need from the machine: a Docker engine that answers, and the images they
 * build on. Tests get image names from the same settings users have (CLAUDE_BOTTLE_BASE_IMAGE,
 * CLAUDE_BOTTLE_REGISTRY_IMAGE), so a machine without Docker Hub points them at local images.
 */
import { defaults } from "../config-schema.js";
import { registryLabel } from "../ephemeral-registry.js";
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

/**
 * Names of claude-bottle registry containers created since `since`, read from the engine's events,
 * so a test can tell its own registries from those of other processes sharing the engine.
 */
export async function registriesCreatedSince(
  since: Date | string,
  engine = new ImageEngine(),
): Promise<string[]> {
  const out = await engine.exec(
    [
      "events",
      "--since",
      typeof since === "string" ? since : since.toISOString(),
      "--until",
      new Date(Date.now() + 1000).toISOString(),
      "--filter",
      "type=container",
      "--filter",
      "event=create",
      "--filter",
      `label=${registryLabel}=registry`,
      "--format",
      "{{.Actor.Attributes.name}}",
    ],
    "RUN_FAILED",
    "reading the engine's events",
  );
  return out.split("\n").filter(Boolean);
}

/** Those of `names` that are still containers on the engine. */
export async function existingContainers(names: string[], engine = new ImageEngine()): Promise<string[]> {
  if (names.length === 0) return [];
  const out = await engine.exec(
    ["ps", "--all", "--format", "{{.Names}}"],
    "RUN_FAILED",
    "listing containers",
  );
  const present = new Set(out.split("\n"));
  return names.filter((name) => present.has(name));
}
