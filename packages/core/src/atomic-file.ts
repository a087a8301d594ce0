import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";

export interface AtomicWriteOptions {
  /** Mode of a new file (the umask applies); default 0o666, as fs.writeFile. */
  mode?: number;
  /** Where the content is staged; default `<path>.<random>.partial` beside it. */
  temporary?: string;
  /** Flush the content to disk before it takes the name (for what must survive a crash). */
  durable?: boolean;
}

/**
 * Write `content` to `path` so that a reader, or a process killed halfway, sees the old file or
 * the new one, never half of one: staged in a new file of its own (created exclusively, so never
 * one someone planted), then renamed over `path`. The staged file is removed when a later step fails.
 */
export async function writeFileAtomically(
  path: string,
  content: string,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const temporary = options.temporary ?? `${path}.${randomBytes(6).toString("hex")}.partial`;
  // Opened exclusively: a name that is taken is left as it is, and only a file made here is removed.
  const handle = await open(temporary, "wx", options.mode ?? 0o666);
  try {
    try {
      await handle.writeFile(content);
      if (options.durable) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
