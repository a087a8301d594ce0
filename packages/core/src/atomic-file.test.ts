import { mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { writeFileAtomically } from "./atomic-file.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cb-atomic-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe("writeFileAtomically", () => {
  it("replaces the file whole, with the mode asked for a new one, and leaves nothing beside it", async () => {
    const path = join(dir, "state.json");
    await writeFile(path, "old");
    await writeFileAtomically(path, "new", { mode: 0o600, durable: true });
    expect(await readFile(path, "utf8")).toBe("new");
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(["state.json"]);
  });

  it("stages where it is told, and never writes through a file already there", async () => {
    const path = join(dir, "state.json");
    const target = join(dir, "elsewhere");
    await writeFile(target, "untouched");
    const temporary = join(dir, ".partial-state");
    await symlink(target, temporary);
    await expect(writeFileAtomically(path, "new", { temporary })).rejects.toThrow(/EEXIST/);
    expect(await readFile(target, "utf8")).toBe("untouched");
    await rm(temporary);
    await writeFileAtomically(path, "new", { temporary });
    expect(await readdir(dir)).toEqual(["elsewhere", "state.json"]);
  });
});
