/**
 * "Is this path inside that folder?", the question behind every check that keeps what a bottle
 * can write (its workspace, its home) apart from what the host trusts or runs. Links count: a
 * folder reached through a symlink is the folder it points to, as it is for the bottle's mounts.
 */
import { realpathSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";

/** True when `path` is `folder` or inside it, by its name or after resolving links. */
export function isInside(path: string, folder: string): boolean {
  return lexicallyInside(resolve(path), resolve(folder)) || lexicallyInside(realPath(path), realPath(folder));
}

function lexicallyInside(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel === "" || !(rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel));
}

/** The path with every link resolved; for a path that does not exist yet, its nearest existing ancestor's. */
export function realPath(path: string): string {
  const absolute = resolve(path);
  try {
    return realpathSync(absolute);
  } catch {
    const parent = dirname(absolute);
    return parent === absolute ? absolute : join(realPath(parent), basename(absolute));
  }
}
