/**
 * Which project config files the user has trusted, and in what state.
 *
 * The workspace is mounted read-write into the bottle, so a `claude-bottle.config.json` found in
 * it may have been written by the agent of an earlier run. Such a file decides where the real API
 * key goes, what the bottle can reach and what runs on the host, so the host applies it only
 * after the user said so: `claude-bottle trust` records the file's path and the SHA-256 of its
 * content (and of the files it names that are read on the host: its Dockerfile and CA bundle).
 * A new file, a changed file, a file moved or copied elsewhere, or a changed Dockerfile is
 * untrusted until the user runs `claude-bottle trust` again — the model of direnv's `allow` and
 * mise's `trust`.
 *
 * The records live in the user's claude-bottle config folder, beside the user config, never in
 * the workspace or in the data dir whose per-project homes are mounted into bottles. Writing the
 * store is a read-modify-rename of one small JSON file: the worst a concurrent `trust` can do is
 * lose the other's record, which the next run reports as untrusted (no lock needed for that).
 */
import { createHash } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BottleError } from "@claude-bottle/core";
import { writeFileAtomically } from "@claude-bottle/core/files";
import { z } from "zod";

/** What is trusted of one config file: its content, and the content of each file it names. */
export interface Fingerprint {
  /** SHA-256 (hex) of the config file's bytes. */
  sha256: string;
  /** Absolute path → SHA-256 of its bytes, or null when it did not exist. */
  files: Record<string, string | null>;
}

const recordSchema = z.object({
  sha256: z.string(),
  files: z.record(z.string(), z.string().nullable()).default({}),
  trustedAt: z.string(),
});
export type TrustRecord = z.infer<typeof recordSchema>;

const storeSchema = z.object({
  version: z.literal(1),
  trusted: z.record(z.string(), recordSchema),
});

export type TrustStatus =
  | { state: "trusted" }
  /** Never trusted at this path (new, or copied or moved here). */
  | { state: "new" }
  /** Trusted once, and the file or one of the files it names has changed since. */
  | { state: "changed"; changed: string[] };

export const trustStoreName = "trusted-configs.json";

export function sha256(bytes: string | Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The fingerprint of a config file read as `text`, naming `files` (absolute paths). */
export async function fingerprintOf(text: string, files: string[]): Promise<Fingerprint> {
  const hashes: Record<string, string | null> = {};
  for (const file of [...new Set(files)].sort()) {
    hashes[file] = await readFile(file).then(sha256, (error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT" || error.code === "ENOTDIR") return null;
      throw new BottleError("INVALID_CONFIG", `${file}: cannot be read (${error.message})`);
    });
  }
  return { sha256: sha256(text), files: hashes };
}

export class TrustStore {
  /** The store file, `<config dir>/trusted-configs.json`. */
  readonly path: string;

  constructor(configDir: string) {
    this.path = join(configDir, trustStoreName);
  }

  async records(): Promise<Record<string, TrustRecord>> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
      throw new BottleError("INVALID_CONFIG", `${this.path}: cannot be read (${(error as Error).message})`);
    }
    let parsed: ReturnType<typeof storeSchema.safeParse>;
    try {
      parsed = storeSchema.safeParse(JSON.parse(text));
    } catch {
      parsed = storeSchema.safeParse(undefined);
    }
    if (!parsed.success) {
      // Refusing, rather than treating it as empty, keeps a damaged store from silently dropping
      // trust the user gave (and tells them where the file is).
      throw new BottleError(
        "INVALID_CONFIG",
        `${this.path}: not a claude-bottle trust store; delete it and run \`claude-bottle trust\` again where needed`,
      );
    }
    return parsed.data.trusted;
  }

  /** Whether `configPath`, as fingerprinted now, is what the user trusted. */
  async status(configPath: string, now: Fingerprint): Promise<TrustStatus> {
    const record = (await this.records())[configPath];
    if (!record) return { state: "new" };
    const changed: string[] = [];
    if (record.sha256 !== now.sha256) changed.push(configPath);
    for (const file of new Set([...Object.keys(record.files), ...Object.keys(now.files)])) {
      if ((record.files[file] ?? null) !== (now.files[file] ?? null)) changed.push(file);
    }
    return changed.length === 0 ? { state: "trusted" } : { state: "changed", changed };
  }

  async trust(configPath: string, fingerprint: Fingerprint, now = new Date()): Promise<void> {
    const trusted = await this.records();
    trusted[configPath] = { ...fingerprint, trustedAt: now.toISOString() };
    await this.write(trusted);
  }

  /** Forget `configPath`; false when it was not trusted. */
  async untrust(configPath: string): Promise<boolean> {
    const trusted = await this.records();
    if (!(configPath in trusted)) return false;
    delete trusted[configPath];
    await this.write(trusted);
    return true;
  }

  private async write(trusted: Record<string, TrustRecord>): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    await writeFileAtomically(this.path, `${JSON.stringify({ version: 1, trusted }, null, 2)}\n`, {
      mode: 0o600,
    });
  }
}
