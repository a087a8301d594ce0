/**
 * The config file's JSON Schema (config.schema.json, for editors), generated from the zod schemas:
 * core's config schema with each built-in backend's options schema under `backends.<name>`.
 */
import { dockerOptionsSchema } from "@claude-bottle/backend-docker";
import { smolmachinesOptionsSchema } from "@claude-bottle/backend-smolmachines";
import { configSchema } from "@claude-bottle/core";
import { z } from "zod";

export const fullConfigSchema = configSchema.extend({
  backends: z
    .object({
      docker: dockerOptionsSchema.optional(),
      smolmachines: smolmachinesOptionsSchema.optional(),
    })
    .catchall(z.record(z.string(), z.unknown()))
    .optional()
    .describe("Options for each backend, by backend name; third-party backends validate their own."),
});

export function configJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(fullConfigSchema, { io: "input" }),
    title: "claude-bottle configuration (claude-bottle.config.json)",
  };
}
