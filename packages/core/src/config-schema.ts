import { z } from "zod";
import { claudeCodeVersionSchema } from "./claude-code-version.js";
import {
  allowEntrySchema,
  networkModes,
  networkPresetSchema,
  portSchema,
  publishEntrySchema,
} from "./network-policy.js";
import { resourcesSchema } from "./run-spec.js";

const imageSchema = z
  .strictObject({
    ref: z
      .string()
      .min(1)
      .optional()
      .describe("The tag the agent image is built as (default claude-bottle:latest)."),
    base: z
      .string()
      .min(1)
      .optional()
      .describe("Base image of the bundled Dockerfile (default node:24-bookworm-slim)."),
    dockerfile: z.string().min(1).optional().describe("Your own Dockerfile, instead of the bundled one."),
    context: z
      .string()
      .min(1)
      .optional()
      .describe("Build context for `dockerfile` (default: the Dockerfile's folder)."),
    use: z.string().min(1).optional().describe("An existing image to use as it is; nothing is built."),
  })
  .refine((image) => !(image.use && (image.dockerfile || image.context || image.base)), {
    message: "`use` names a finished image; it cannot be combined with `dockerfile`, `context` or `base`",
  })
  .refine((image) => !(image.context && !image.dockerfile), {
    message: "`context` needs `dockerfile`",
  });

/** The claude-bottle config file (`claude-bottle.config.json`), as users write it. */
export const configSchema = z
  .strictObject({
    $schema: z.string().optional(),
    backend: z
      .string()
      .min(1)
      .optional()
      .describe(
        'The sandbox runtime: "docker", "smolmachines", "podman", or the npm package name of a third-party backend.',
      ),
    image: imageSchema.optional(),
    claudeCode: z
      .strictObject({
        version: claudeCodeVersionSchema,
      })
      .optional(),
    anthropic: z
      .strictObject({
        baseUrl: z.url().describe("The API endpoint Claude Code uses (a company gateway, for instance)."),
      })
      .optional(),
    tls: z
      .strictObject({
        extraCaCerts: z
          .string()
          .min(1)
          .describe("A PEM file of extra CA certificates trusted in image builds and in the bottle."),
      })
      .optional(),
    cacheDir: z.string().min(1).optional().describe("claude-bottle's cache folder (packed VM images)."),
    dataDir: z.string().min(1).optional().describe("claude-bottle's data folder (per-project agent state)."),
    resources: resourcesSchema.optional(),
    network: z
      .strictObject({
        mode: z
          .enum(networkModes)
          .optional()
          .describe("allowlist (default): only allowed hosts; open: anything; none: only the Anthropic API."),
        allow: z
          .array(allowEntrySchema)
          .optional()
          .describe(
            "Hosts (example.com), subdomain wildcards (*.example.com), IP addresses and CIDR blocks.",
          ),
        presets: z
          .array(networkPresetSchema)
          .optional()
          .describe("Named groups of hosts to allow, e.g. npm, pypi, github, debian."),
        hostPorts: z
          .array(portSchema)
          .optional()
          .describe(
            "Ports of services on your machine the bottle may reach, each as localhost:PORT inside; the agent can do whatever that service allows.",
          ),
        publish: z
          .array(publishEntrySchema)
          .optional()
          .describe(
            'Ports of the bottle to reach from your machine, as PORT or "PORT:HOSTPORT"; on 127.0.0.1:HOSTPORT only.',
          ),
      })
      .optional(),
    credentials: z
      .strictObject({
        passthrough: z
          .boolean()
          .optional()
          .describe(
            "Put your real API key or OAuth token inside the bottle instead of a placeholder (default false). " +
              "Anything running in the bottle can then read and send it away.",
          ),
        store: z
          .enum(["auto", "file"])
          .optional()
          .describe(
            "Where `claude-bottle login` keeps the credential: auto (default) the OS credential store when " +
              "there is one, else a file only you can read; file: always that file.",
          ),
      })
      .optional(),
    git: z
      .strictObject({
        protect: z
          .boolean()
          .optional()
          .describe(
            "Keep .git/config, .git/hooks and .gitmodules read-only in the bottle (default true). " +
              "Set false only if the agent must change git config or hooks: git on your machine runs what it puts there.",
          ),
      })
      .optional(),
    backends: z
      .record(z.string(), z.record(z.string(), z.unknown()))
      .optional()
      .describe("Options for each backend, by backend name."),
  })
  .describe("claude-bottle configuration");

export type Config = z.infer<typeof configSchema>;
