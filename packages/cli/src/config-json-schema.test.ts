import { describe, expect, it } from "vitest";
import { configJsonSchema } from "./config-json-schema.js";

describe("config.schema.json", () => {
  it("is current with the zod schemas (regenerate: pnpm --filter claude-bottle test -u)", async () => {
    await expect(`${JSON.stringify(await configJsonSchema(), null, 2)}\n`).toMatchFileSnapshot(
      "../config.schema.json",
    );
  });

  it("describes the keys users write", async () => {
    const schema = (await configJsonSchema()) as {
      properties: Record<string, { description?: string }>;
      additionalProperties: unknown;
    };
    expect(Object.keys(schema.properties)).toEqual(
      expect.arrayContaining([
        "backend",
        "image",
        "claudeCode",
        "anthropic",
        "tls",
        "network",
        "git",
        "backends",
      ]),
    );
    expect(schema.properties.backend?.description).toMatch(/third-party/);
    expect(schema.additionalProperties).toBe(false);
  });
});
