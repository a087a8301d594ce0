/**
 * What integration tests need from the machine: a Docker engine that answers, and the images they
 * build on. Tests get the base image's name from the setting users have (CLAUDE_BOTTLE_BASE_IMAGE),
 * so a machine without Docker Hub points them at a local image.
 */
import { defaults } from "@claude-bottle/core";
import { ImageEngine } from "../image-engine.js";
import { roleLabel } from "../image-export.js";

export interface IntegrationEnvironment {
  engine: ImageEngine;
  /** Base image for the bundled agent Dockerfile. */
  baseImage: string;
}

export function integrationEnvironment(env: NodeJS.ProcessEnv = process.env): IntegrationEnvironment {
  return {
    engine: new ImageEngine(),
    baseImage: env.CLAUDE_BOTTLE_BASE_IMAGE || defaults.baseImage,
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
  for (const image of [environment.baseImage]) {
    if (!(await engine.imageExists(image))) missing.push(image);
  }
  if (missing.length > 0) {
    throw new Error(
      `Integration tests need these images and the engine has none of them: ${missing.join(", ")}. Pull them, or build local stand-ins with scripts/local-images.sh and set CLAUDE_BOTTLE_BASE_IMAGE.`,
    );
  }
}

/**
 * Names of the containers claude-bottle made for its own work with this role ("export": see
 * image-export.ts) since `since`, read from the engine's events, so a test can tell its own from
 * those of other processes sharing the engine.
 */
export async function containersCreatedSince(
  since: Date | string,
  role: "export" | "registry",
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
      `label=${roleLabel}=${role}`,
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

/**
 * The address at which the engine's containers reach this test process's machine: where a test
 * double must listen (on 0.0.0.0, or this address) for a bottle's gateway to reach it.
 * `CLAUDE_BOTTLE_TEST_ENGINE_HOST_ADDRESS` says it for an engine elsewhere (another network
 * namespace, a VM); without it the engine is taken to share this machine's network, and the default
 * bridge's gateway address is the answer.
 */
export async function engineHostAddress(
  engine = new ImageEngine(),
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const configured = env.CLAUDE_BOTTLE_TEST_ENGINE_HOST_ADDRESS?.trim();
  if (configured) return configured;
  const inspect = await engine.inspect("bridge");
  const configs = (inspect.IPAM as { Config?: { Gateway?: string; Subnet?: string }[] | null }).Config ?? [];
  const ipv4 = configs.find((config) => /^\d+\.\d+\.\d+\.\d+/.test(config.Gateway ?? config.Subnet ?? ""));
  if (ipv4?.Gateway) return ipv4.Gateway;
  // The default bridge often lists only its subnet; its gateway is the subnet's first address.
  const match = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/\d+$/.exec(ipv4?.Subnet ?? "");
  if (!match)
    throw new Error("cannot tell the default bridge's gateway; set CLAUDE_BOTTLE_TEST_ENGINE_HOST_ADDRESS");
  return `${match[1]}.${match[2]}.${match[3]}.${Number(match[4]) + 1}`;
}

/** `url` (a test double's, on 0.0.0.0) with its host replaced by the engine's way to this machine. */
export async function urlForEngine(url: string, engine = new ImageEngine()): Promise<string> {
  const parsed = new URL(url);
  const address = await engineHostAddress(engine);
  parsed.hostname = address.includes(":") ? `[${address}]` : address;
  return parsed.toString().replace(/\/$/, "");
}
