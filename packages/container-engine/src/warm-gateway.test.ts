import { describe, expect, it } from "vitest";
import { z } from "zod";
import { defaultWarmGatewayMinutes, warmGatewayOptionsShape } from "./warm-gateway.js";

const schema = z.strictObject(warmGatewayOptionsShape);

describe("warmGatewayMinutes", () => {
  it("defaults to the default, takes 0 (a gateway per run) and fractions of a minute", () => {
    expect(schema.parse({})).toEqual({ warmGatewayMinutes: defaultWarmGatewayMinutes });
    expect(schema.parse({ warmGatewayMinutes: 0 })).toEqual({ warmGatewayMinutes: 0 });
    expect(schema.parse({ warmGatewayMinutes: 0.5 })).toEqual({ warmGatewayMinutes: 0.5 });
  });

  it("refuses a negative time, more than a day, and what is not a number", () => {
    for (const warmGatewayMinutes of [-1, 24 * 60 + 1, "15"])
      expect(schema.safeParse({ warmGatewayMinutes }).success).toBe(false);
  });
});
