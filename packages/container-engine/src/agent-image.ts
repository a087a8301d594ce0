/**
 * The agent image: what `prepare` builds by default for every backend. The bundled Dockerfile
 * (agent-image/Dockerfile in this package) installs a pinned Claude Code on a configurable base;
 * users can bring their own Dockerfile or name a finished image instead.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type AgentImageSource, BottleError, defaults } from "@claude-bottle/core";
import {
  type BuildMemory,
  type BundledBuildInputs,
  rememberBuild,
  reusableBuild,
} from "./agent-image-reuse.js";
import { engineFailure } from "./engine-output.js";
import type { ImageEngine } from "./image-engine.js";

/**
 * The folder holding the bundled Dockerfile, found through this package's own package.json, so it
 * is found the same way from core's build, from its sources, and from the CLI's bundle.
 */
export const bundledAgentImageDir = join(
  dirname(createRequire(import.meta.url).resolve("@claude-bottle/container-engine/package.json")),
  "agent-image",
);

export const agentImageLabel = "dev.claude-bottle.image";
/** The Claude Code version the bundled Dockerfile installed, for `doctor`. */
export const claudeCodeVersionLabel = "dev.claude-bottle.claude-code-version";

/** The Claude Code version the bundled Dockerfile recorded in `imageRef`, or undefined (Backend.claudeCodeVersionIn). */
export async function claudeCodeVersionOf(
  engine: ImageEngine,
  imageRef: string,
): Promise<string | undefined> {
  const label = await engine
    .exec(
      ["image", "inspect", "--format", `{{ index .Config.Labels "${claudeCodeVersionLabel}" }}`, imageRef],
      "RUN_FAILED",
      `inspecting ${imageRef}`,
    )
    .catch(() => "");
  return /^\d+\.\d+\.\d+\S*$/.test(label) ? label : undefined;
}

export interface BuildAgentImageOptions {
  onOutput?: (line: string) => void;
  signal?: AbortSignal;
  /**
   * Reuse the bundled image while nothing it is built from has changed, remembering builds here
   * (agent-image-reuse.ts); without it, every `prepare` builds.
   */
  memory?: BuildMemory;
}

/**
 * Make `imageRef` an up-to-date agent image; resolves with its id (`sha256:…`). Bundled and
 * Dockerfile sources are built every time, which is cheap when every layer is cached and means
 * Dockerfile edits land without a manual `rmi`; with `memory`, the bundled image is reused while
 * its inputs and its base are the same (agent-image-reuse.ts).
 */
export async function buildAgentImage(
  engine: ImageEngine,
  imageRef: string,
  source: AgentImageSource,
  buildOptions: BuildAgentImageOptions = {},
): Promise<string> {
  const { memory, ...options } = buildOptions;
  switch (source.kind) {
    case "existing": {
      const present = await engine.imageId(imageRef).catch((error: unknown) => {
        if (BottleError.is(error) && error.code === "ENGINE_UNREACHABLE") throw error;
        return undefined;
      });
      if (present) return present;
      await engine.exec(["pull", imageRef], "PREPARE_FAILED", `pulling image ${imageRef}`, {
        cancelSignal: options.signal,
      });
      return engine.imageId(imageRef);
    }
    case "dockerfile": {
      return await engine.build({
        tag: imageRef,
        context: source.context,
        dockerfile: source.dockerfile,
        buildArgs: { CLAUDE_CODE_VERSION: source.claudeCodeVersion ?? defaults.claudeCodeVersion },
        labels: { [agentImageLabel]: "custom" },
        ...options,
      });
    }
    case "bundled": {
      // The inputs (two small files) are read synchronously, and the build, or the engine's one
      // question when the last build can be reused, starts in the same turn of the event loop as
      // this call: `run` sets up the bottle meanwhile, and each await here would wait for a turn
      // behind that setup's work.
      const base = source.base ?? defaults.baseImage;
      const claudeCodeVersion = source.claudeCodeVersion ?? defaults.claudeCodeVersion;
      const inputs: BundledBuildInputs = {
        tag: imageRef,
        base,
        dockerfile: readFileSync(join(bundledAgentImageDir, "Dockerfile"), "utf8"),
        caCerts: readCaCerts(source.extraCaCerts),
        buildArgs: { BASE_IMAGE: base, CLAUDE_CODE_VERSION: claudeCodeVersion },
        labels: { [agentImageLabel]: "bundled", [claudeCodeVersionLabel]: claudeCodeVersion },
      };
      if (memory) {
        const reused = await reusableBuild(engine, memory, inputs);
        if (reused) return reused;
      }
      const context = mkdtempSync(join(tmpdir(), "claude-bottle-build-"));
      try {
        writeFileSync(join(context, "Dockerfile"), inputs.dockerfile);
        writeFileSync(join(context, "extra-ca-certificates.pem"), inputs.caCerts);
        const imageId = await engine.build({
          tag: imageRef,
          context,
          buildArgs: inputs.buildArgs,
          labels: inputs.labels,
          ...options,
        });
        // In the background: the run need not wait to have it remembered.
        if (memory) rememberBuild(engine, memory, inputs, imageId).catch(() => {});
        return imageId;
      } catch (error) {
        throw await explainBaseImageFailure(engine, error, base);
      } finally {
        await rm(context, { recursive: true, force: true });
      }
    }
  }
}

/**
 * The extra CA certificates (tls.extraCaCerts) as text, or "" when none are configured. Read
 * synchronously, as what needs them is on the way to starting a build (see buildAgentImage).
 */
export function readCaCerts(path: string | undefined): string {
  if (!path) return "";
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new BottleError("PREPARE_FAILED", `cannot read extra CA certificates from ${path}`, {
      hint: "fix tls.extraCaCerts in config (or NODE_EXTRA_CA_CERTS) to point at a PEM file",
      cause: error,
    });
  }
}

/** Docker's pull errors rarely name the image; when the base could not be pulled, say which it was. */
async function explainBaseImageFailure(engine: ImageEngine, error: unknown, base: string): Promise<unknown> {
  if (
    !BottleError.is(error) ||
    error.code !== "PREPARE_FAILED" ||
    engineFailure(error.message) !== "image-unavailable"
  )
    return error;
  if (await engine.imageExists(base)) return error;
  const reason = error.message.trim().split("\n").at(-1)?.trim();
  return new BottleError("PREPARE_FAILED", `the base image ${base} is not available: ${reason}`, {
    hint: "pull it, or set image.base in config (or CLAUDE_BOTTLE_BASE_IMAGE) to a Node image you have",
    cause: error,
  });
}
