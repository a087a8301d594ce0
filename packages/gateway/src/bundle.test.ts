// The gateway (main.mjs, which loads serve.mjs) and the relay run in containers where nothing but Node is installed: each must be one
// file that needs only Node's built-in modules (tsdown bundles the rest, see tsdown.config.ts).
import { readFile } from "node:fs/promises";
import { builtinModules } from "node:module";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { gatewayAppDir } from "./app-dir.js";

const builtins = new Set(builtinModules);

describe("the programs that run in containers", () => {
  it.each(["main.mjs", "serve.mjs", "warm.mjs", "attach.mjs", "relay.mjs"])(
    "%s imports nothing but Node's own modules",
    async (file) => {
      const code = await readFile(join(gatewayAppDir, file), "utf8");
      const specifiers = [...code.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)].map((m) => m[1]!);
      // main.mjs imports nothing at all (it names serve.mjs at run time); the others use built-ins.
      if (file !== "main.mjs") expect(specifiers.length).toBeGreaterThan(0);
      expect(specifiers.filter((s) => !builtins.has(s.replace(/^node:/, "")))).toEqual([]);
    },
  );

  it("keeps the gateway's entry small: the services' code and libraries load from serve.mjs, once needed", async () => {
    const main = await readFile(join(gatewayAppDir, "main.mjs"), "utf8");
    expect(main).toContain("serve.mjs");
    expect(main).not.toMatch(/node:https?["']/);
    expect(main.length).toBeLessThan(20_000);
  });
});
