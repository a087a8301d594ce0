import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isInside, realPath } from "./path-inside.js";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-inside-"));
});
afterEach(() => rm(root, { recursive: true, force: true }));

describe("isInside", () => {
  it.each([
    ["/a/b", "/a/b", true],
    ["/a/b/c", "/a/b", true],
    ["/a/b/../b/c", "/a/b", true],
    ["/a/bc", "/a/b", false],
    ["/a", "/a/b", false],
    ["/a/..b/c", "/a", true],
    ["/x/y", "/a/b", false],
  ])("%s in %s: %s", (path, folder, inside) => {
    expect(isInside(path, folder)).toBe(inside);
  });

  it("sees through links, also for paths that do not exist yet", async () => {
    const project = join(root, "project");
    await mkdir(join(project, "sub"), { recursive: true });
    await symlink(project, join(root, "link"));
    // The config folder named through a link, not created yet: still inside the project.
    expect(isInside(join(root, "link", "sub", ".config", "claude-bottle"), project)).toBe(true);
    expect(isInside(join(project, "sub"), join(root, "link"))).toBe(true);
    expect(realPath(join(root, "link", "none", "deeper"))).toBe(join(realPath(project), "none", "deeper"));
    expect(isInside(join(root, "elsewhere"), join(root, "link"))).toBe(false);
  });
});
