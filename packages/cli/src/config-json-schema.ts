/**
 * The config file's JSON Schema (config.schema.json, for editors), generated from the zod schemas:
 * core's config schema with each built-in backend's `optionsSchema` under `backends.<name>`.
 */
import { configSchema } from "@claude-bottle/core/config";
import { z } from "zod";
import { builtinBackends } from "./builtin-backends.js";

export async function fullConfigSchema() {
  const backends: Record<string, z.ZodType> = {};
  for (const [name, load] of Object.entries(builtinBackends)) {
    backends[name] = ((await load()).optionsSchema as z.ZodType).optional();
  }
  return configSchema.extend({
    backends: z
      .object(backends)
      .catchall(z.record(z.string(), z.unknown()))
      .optional()
      .describe("Options for each backend, by backend name; third-party backends validate their own."),
  });
}

export async function configJsonSchema(): Promise<Record<string, unknown>> {
  return {
    ...z.toJSONSchema(await fullConfigSchema(), { io: "input" }),
    title: "claude-bottle configuration (claude-bottle.config.json)",
  };
}
