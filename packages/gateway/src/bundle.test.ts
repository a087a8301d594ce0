// The gateway and the relay run in containers where nothing but Node is installed: each must be one
// file that needs only Node's built-in modules (tsdown bundles the rest, see tsdown.config.ts).
import { readFile } from "node:fs/promises";
import { builtinModules } from "node:module";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { gatewayAppDir } from "./app-dir.js";

const builtins = new Set(builtinModules);

describe("the programs that run in containers", () => {
  it.each(["main.mjs", "relay.mjs"])("%s imports nothing but Node's own modules", async (file) => {
    const code = await readFile(join(gatewayAppDir, file), "utf8");
    const specifiers = [...code.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)].map((m) => m[1]!);
    expect(specifiers.length).toBeGreaterThan(0);
    expect(specifiers.filter((s) => !builtins.has(s.replace(/^node:/, "")))).toEqual([]);
  });
});
