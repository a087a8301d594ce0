/**
 * Which Claude Code goes into the agent image. `claudeCode.version` is an exact version (used as it
 * is) or an npm dist-tag such as `latest`, resolved to a version through the user's npm registry at
 * most once a day and cached in claude-bottle's cache folder with the time it was resolved. The
 * resolved version is a build argument of the image, so a new release rebuilds the image once and
 * every build after that hits Docker's cache.
 *
 * The registry and its credentials come from the user's npm configuration (user and global
 * `.npmrc`, `npm_config_*` variables), never from a project's `.npmrc`: the project folder is the
 * agent's to write, and what it writes must not choose where the host sends its npm token or which
 * Claude Code the next image gets.
 */
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomically } from "./atomic-file.js";
import { BottleError } from "./errors.js";
import { nodeHttps, nodeTls } from "./node-builtins.js";

export const claudeCodePackage = "@anthropic-ai/claude-code";

/** How long a resolved dist-tag is trusted before the registry is asked again. */
export const distTagMaxAgeMs = 24 * 60 * 60 * 1000;

const exactVersion = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
/** npm dist-tag names: anything that is not a version or range; kept to a safe alphabet here. */
const distTag = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;

export const isExactVersion = (value: string): boolean => exactVersion.test(value);
export const isDistTag = (value: string): boolean => distTag.test(value) && !exactVersion.test(value);

/** `claudeCode.version` in config: a version, or a dist-tag resolved at most once a day. */
export const claudeCodeVersionSchema = z
  .string()
  .refine((value) => isExactVersion(value) || isDistTag(value), {
    message: "expected a version (2.1.332) or an npm dist-tag (latest)",
  })
  .describe(
    "Claude Code installed in the agent image: an exact version, or an npm dist-tag such as latest, resolved through your npm registry at most once a day.",
  );

/** Where dist-tags are asked for, as the user's npm configuration says. */
export interface NpmRegistry {
  /** Base URL, ending in `/`. */
  url: string;
  /** The `Authorization` header value for it, when npm has a token for it. */
  authorization?: string;
  /** Extra CA certificates (npm's `ca`/`cafile`), PEM. */
  ca?: string[];
}

/** The registry for Claude Code's package from the user's (not the project's) npm configuration. */
export async function userNpmRegistry(): Promise<NpmRegistry> {
  // Loaded only when a dist-tag is resolved: most commands never need npm's configuration.
  // @ts-expect-error @pnpm/npm-conf ships no types; the part used here is typed below
  const { default: npmConf } = (await import("@pnpm/npm-conf")) as {
    default: (options: Record<string, unknown>) => { config: { get(key: string): unknown } };
  };
  const { default: registryAuthToken } = await import("registry-auth-token");
  // `global: true` leaves out the project's .npmrc (see this module's comment).
  const { config } = npmConf({ global: true });
  const scope = claudeCodePackage.split("/")[0];
  const configured = String(config.get(`${scope}:registry`) ?? config.get("registry") ?? "");
  const url = (configured || "https://registry.npmjs.org/").replace(/\/?$/, "/");
  const npmrc = new Proxy({}, { get: (_, key) => config.get(String(key)) });
  const auth = registryAuthToken(url, { npmrc: npmrc as Record<string, string | undefined> });
  const ca = config.get("ca");
  const extraCas = (Array.isArray(ca) ? ca : ca ? [ca] : []).map(String).filter(Boolean);
  return {
    url,
    ...(auth && { authorization: `${auth.type} ${auth.token}` }),
    ...(extraCas.length > 0 && { ca: extraCas }),
  };
}

/** The part of `fetch` the resolver uses, so tests can hand it another. */
export type FetchJson = (
  url: string,
  init: { headers: Record<string, string>; signal: AbortSignal },
) => Promise<{ status: number; json(): Promise<unknown> }>;

export interface ResolveVersionOptions {
  /** claude-bottle's cache root; the answers are kept in `claude-code-versions.json` there. */
  cacheDir: string;
  /** Default: the user's npm registry (`userNpmRegistry()`). */
  registry?: NpmRegistry;
  /** Default: Node's fetch, or an HTTPS request trusting npm's extra CAs when it has some. */
  fetch?: FetchJson;
  now?: () => Date;
}

export interface ResolvedClaudeCodeVersion {
  /** The exact version to install. */
  version: string;
  /** The dist-tag it came from, when it came from one. */
  tag?: string;
  /** When the registry gave this answer (ISO 8601), for tags. */
  resolvedAt?: string;
  /** Where the answer came from this time. */
  from: "exact" | "registry" | "cache" | "stale-cache";
  /** For `stale-cache`: why the registry was not asked successfully. */
  warning?: string;
}

interface CacheFile {
  entries: Record<string, { version: string; resolvedAt: string }>;
}

const cacheFileName = "claude-code-versions.json";

/** `latest` → the version the registry's `latest` tag names now (asked at most once a day). */
export async function resolveClaudeCodeVersion(
  requested: string,
  options: ResolveVersionOptions,
): Promise<ResolvedClaudeCodeVersion> {
  if (isExactVersion(requested)) return { version: requested, from: "exact" };
  if (!isDistTag(requested)) {
    throw new BottleError(
      "INVALID_CONFIG",
      `claudeCode.version "${requested}" is neither a version (2.1.332) nor an npm dist-tag (latest)`,
    );
  }
  const now = options.now ?? (() => new Date());
  const registry = options.registry ?? (await userNpmRegistry());
  const key = `${registry.url}${claudeCodePackage}@${requested}`;
  const cachePath = join(options.cacheDir, cacheFileName);
  const cache = await readCache(cachePath);
  const cached = cache.entries[key];
  if (cached && now().getTime() - Date.parse(cached.resolvedAt) < distTagMaxAgeMs) {
    return { version: cached.version, tag: requested, resolvedAt: cached.resolvedAt, from: "cache" };
  }

  let tags: Record<string, unknown>;
  try {
    tags = await fetchDistTags(registry, options.fetch ?? defaultFetch(registry));
  } catch (error) {
    const reason = BottleError.is(error) ? error.message : describeFailure(error);
    if (cached) {
      return {
        version: cached.version,
        tag: requested,
        resolvedAt: cached.resolvedAt,
        from: "stale-cache",
        warning: `${registry.url} did not answer (${reason}); using Claude Code ${cached.version}, "${requested}" as of ${cached.resolvedAt}`,
      };
    }
    throw new BottleError(
      "PREPARE_FAILED",
      `cannot resolve claudeCode.version "${requested}": ${registry.url} did not answer (${reason})`,
      {
        hint: "set claudeCode.version to an exact version, or run again when the npm registry is reachable",
        cause: error,
      },
    );
  }
  const version = tags[requested];
  if (typeof version !== "string") {
    throw new BottleError(
      "INVALID_CONFIG",
      `claudeCode.version "${requested}": ${registry.url} has no such dist-tag for ${claudeCodePackage} (it has ${Object.keys(tags).join(", ") || "none"})`,
    );
  }
  if (!isExactVersion(version)) {
    throw new BottleError(
      "PREPARE_FAILED",
      `${registry.url} answered "${requested}" for ${claudeCodePackage} with something that is not a version`,
    );
  }
  const resolvedAt = now().toISOString();
  cache.entries[key] = { version, resolvedAt };
  await writeCache(options.cacheDir, cachePath, cache);
  return { version, tag: requested, resolvedAt, from: "registry" };
}

/** The dist-tags document, the same one `npm dist-tag ls` reads (small, unlike the packument). */
async function fetchDistTags(registry: NpmRegistry, fetchJson: FetchJson): Promise<Record<string, unknown>> {
  const url = `${registry.url}-/package/${claudeCodePackage.replace("/", "%2f")}/dist-tags`;
  const response = await fetchJson(url, {
    headers: {
      accept: "application/json",
      ...(registry.authorization && { authorization: registry.authorization }),
    },
    signal: AbortSignal.timeout(15_000),
  });
  if (response.status !== 200) throw new BottleError("PREPARE_FAILED", `HTTP ${response.status}`);
  const body = await response.json();
  if (!body || typeof body !== "object" || Array.isArray(body)) {
    throw new BottleError("PREPARE_FAILED", "the answer was not a dist-tags document");
  }
  return body as Record<string, unknown>;
}

function describeFailure(error: unknown): string {
  // Node's fetch says "fetch failed" and keeps the reason in its cause (for several addresses, in theirs).
  const cause = (error as { cause?: { code?: string; errors?: { code?: string }[] } }).cause;
  const code = cause?.code ?? cause?.errors?.find((inner) => inner.code)?.code;
  if (code) return code;
  if (error instanceof Error && error.name === "TimeoutError") return "no answer within 15 s";
  return error instanceof Error ? error.message : String(error);
}

/**
 * Node's fetch trusts the system's CAs and NODE_EXTRA_CA_CERTS. npm's own `ca`/`cafile` need a
 * request that is given them, on top of those (Node's fetch takes no CA option).
 */
function defaultFetch(registry: NpmRegistry): FetchJson {
  if (!registry.ca?.length) return (url, init) => fetch(url, init);
  // getCACertificates (Node 22.15+) includes NODE_EXTRA_CA_CERTS; rootCertificates alone does not.
  const tls = nodeTls();
  const base =
    typeof tls.getCACertificates === "function"
      ? tls.getCACertificates("default")
      : [...tls.rootCertificates];
  const ca = [...base, ...registry.ca];
  return (url, init) =>
    new Promise((resolve, reject) => {
      const req = nodeHttps().request(url, { headers: init.headers, ca, signal: init.signal }, (response) => {
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          text += chunk;
        });
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, json: async () => JSON.parse(text) as unknown }),
        );
        response.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });
}

async function readCache(path: string): Promise<CacheFile> {
  try {
    const parsed = JSON.parse(await readFile(path, "utf8")) as Partial<CacheFile>;
    if (parsed.entries && typeof parsed.entries === "object") return { entries: parsed.entries };
  } catch {
    // missing or damaged: the registry is asked again, and the file rewritten
  }
  return { entries: {} };
}

/** Written beside and renamed into place, so concurrent runs never read half a file. */
async function writeCache(dir: string, path: string, cache: CacheFile): Promise<void> {
  await mkdir(dir, { recursive: true });
  try {
    await writeFileAtomically(path, `${JSON.stringify(cache, null, 2)}\n`);
  } catch {
    // a cache that cannot be written costs a request next time, nothing more
  }
}
