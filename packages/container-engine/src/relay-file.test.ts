import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { relayProgram } from "@claude-bottle/gateway";
import { afterEach, describe, expect, it } from "vitest";
import { relayFileIn } from "./relay-file.js";

describe("relayFileIn", () => {
  const made: string[] = [];
  const cacheDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), "cb-relay-file-"));
    made.push(dir);
    return dir;
  };
  afterEach(async () => {
    for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  it("writes the relay's program once, readable by any bottle user, under a name of its contents", async () => {
    const cache = await cacheDir();
    const path = await relayFileIn(cache);
    expect(path).toMatch(new RegExp(`^${cache}/relay/[0-9a-f]{16}\\.mjs$`));
    expect(await readFile(path, "utf8")).toBe(relayProgram());
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect(await relayFileIn(cache)).toBe(path);
    // nothing half-written is left beside it
    expect(await readdir(join(cache, "relay"))).toEqual([path.split("/").pop()]);
  });

  it("writes it again once the cache was cleared, and never rewrites one that is there", async () => {
    const cache = await cacheDir();
    const path = await relayFileIn(cache);
    await rm(join(cache, "relay"), { recursive: true });
    expect(await relayFileIn(cache)).toBe(path);
    expect(await readFile(path, "utf8")).toBe(relayProgram());
    // A file of that name is only ever this content: one that is there is taken as it is, not
    // replaced under a bottle that has it mounted.
    const before = (await stat(path)).ino;
    await relayFileIn(cache);
    expect((await stat(path)).ino).toBe(before);
  });

  it("survives many runs writing it at once: one whole file", async () => {
    const cache = await cacheDir();
    const paths = await Promise.all(Array.from({ length: 8 }, () => relayFileIn(cache)));
    expect(new Set(paths).size).toBe(1);
    expect(await readFile(paths[0]!, "utf8")).toBe(relayProgram());
    expect(await readdir(join(cache, "relay"))).toHaveLength(1);
  });
});
