/**
 * Where `claude-bottle login` keeps the credential the API forwarder puts on requests: an API key or
 * the long-lived OAuth token `claude setup-token` prints. It lives on the host only, never in a
 * bottle, and is never printed.
 *
 * The OS credential store when there is one (macOS Keychain, Windows Credential Manager, the Secret
 * Service of a Linux desktop session), through @napi-rs/keyring, whose prebuilt binaries come in
 * npm packages; otherwise a file in claude-bottle's config folder that only its owner can read.
 *
 * Precedence, first match wins: a credential in the environment (ANTHROPIC_API_KEY,
 * ANTHROPIC_AUTH_TOKEN, CLAUDE_CODE_OAUTH_TOKEN), then the stored one.
 */
import { constants } from "node:fs";
import { mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { BottleError } from "@claude-bottle/core";
import { writeFileAtomically } from "@claude-bottle/core/files";
import { secretNames } from "./bottle-setup.js";

export type CredentialKind = "api-key" | "oauth-token";

export interface StoredCredential {
  kind: CredentialKind;
  value: string;
}

/** The variable each kind reaches the forwarder as (the forwarder sends x-api-key or a bearer token). */
export const variableOfKind = {
  "api-key": "ANTHROPIC_API_KEY",
  "oauth-token": "CLAUDE_CODE_OAUTH_TOKEN",
} as const satisfies Record<CredentialKind, (typeof secretNames)[number]>;

/** How login and doctor name a kind to the user. */
export const kindLabel: Record<CredentialKind, string> = {
  "api-key": "an API key",
  "oauth-token": "an OAuth token (from claude setup-token)",
};

/**
 * Tell an API key from a setup-token by its shape: Anthropic's API keys start `sk-ant-api`, the
 * tokens `claude setup-token` prints start `sk-ant-oat`. Anything else is refused unless the user
 * says what it is (`--kind`), as a company gateway's own keys may look like anything.
 */
export function credentialKindOf(value: string): CredentialKind | undefined {
  if (/^sk-ant-oat\d*-/.test(value)) return "oauth-token";
  if (/^sk-ant-api\d*-/.test(value)) return "api-key";
  return undefined;
}

/** Check a credential as typed or piped in; resolves its kind. The value is never part of a message. */
export function checkCredential(value: string, kind?: CredentialKind): CredentialKind {
  if (value === "") {
    throw new BottleError("USAGE", "no credential given", {
      hint: "pipe it in (claude-bottle login < key-file) or paste it at the prompt",
    });
  }
  if (/[\s\p{Cc}]/u.test(value) || value.length > 4096) {
    throw new BottleError("USAGE", "the credential has spaces, line breaks or control characters in it", {
      hint: "give the key or token alone, on one line",
    });
  }
  if (/^sk-ant-admin/.test(value)) {
    throw new BottleError("USAGE", "that is an Admin API key, which cannot call the Messages API", {
      hint: "create a regular API key in the Anthropic Console, or run `claude setup-token`",
    });
  }
  const found = kind ?? credentialKindOf(value);
  if (!found) {
    throw new BottleError(
      "USAGE",
      "the credential is neither an Anthropic API key (sk-ant-api…) nor a token from `claude setup-token` (sk-ant-oat…)",
      {
        hint: "for a gateway's own key, say what it is: claude-bottle login --kind api-key (or oauth-token)",
      },
    );
  }
  return found;
}

export interface CredentialStore {
  /** Where the credential is kept, as the user should read it: "the macOS Keychain", a file path… */
  readonly description: string;
  read(): Promise<StoredCredential | undefined>;
  write(credential: StoredCredential): Promise<void>;
  /** Resolves true when there was a credential to remove. */
  remove(): Promise<boolean>;
}

function parseStored(text: string, where: string): StoredCredential {
  try {
    const parsed = JSON.parse(text) as Partial<StoredCredential>;
    if (
      (parsed.kind === "api-key" || parsed.kind === "oauth-token") &&
      typeof parsed.value === "string" &&
      parsed.value !== ""
    ) {
      return { kind: parsed.kind, value: parsed.value };
    }
  } catch {
    // reported below, without the text: it may be the credential itself
  }
  throw new BottleError("CREDENTIAL_STORE_FAILED", `the credential stored in ${where} is not readable`, {
    hint: "run `claude-bottle login` again",
  });
}

const serialise = (credential: StoredCredential) =>
  JSON.stringify({ kind: credential.kind, value: credential.value });

/**
 * The file store: `<config dir>/credential.json`, mode 0600 from its creation (a new file is
 * written beside it and renamed into place, so no moment exists where it is readable by others or
 * half-written). A file that others could read, or that belongs to someone else, is refused: its
 * credential may have been seen, or planted.
 */
export function fileCredentialStore(configDir: string): CredentialStore {
  const path = join(configDir, "credential.json");
  const checkOwnership = process.platform !== "win32"; // no POSIX owner and mode bits to check there
  return {
    description: path,

    async read() {
      let handle: Awaited<ReturnType<typeof open>>;
      try {
        handle = await open(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT") return undefined;
        if (code === "ELOOP") throw refuse(path, "it is a symbolic link");
        throw new BottleError("CREDENTIAL_STORE_FAILED", `cannot read the stored credential ${path}`, {
          hint: "check the file's permissions, or run `claude-bottle login` again",
          cause: error,
        });
      }
      try {
        const info = await handle.stat();
        if (!info.isFile()) throw refuse(path, "it is not a regular file");
        if (checkOwnership) {
          const uid = process.getuid?.();
          if (uid !== undefined && info.uid !== uid) {
            throw refuse(path, `it belongs to uid ${info.uid}, not to you (uid ${uid})`);
          }
          if ((info.mode & 0o077) !== 0) {
            throw refuse(
              path,
              `group or others may read or change it (mode ${(info.mode & 0o777).toString(8).padStart(4, "0")})`,
            );
          }
        }
        return parseStored(await handle.readFile("utf8"), path);
      } finally {
        await handle.close();
      }
    },

    async write(credential) {
      await mkdir(configDir, { recursive: true, mode: 0o700 });
      try {
        await writeFileAtomically(path, `${serialise(credential)}\n`, { mode: 0o600, durable: true });
      } catch (error) {
        throw new BottleError("CREDENTIAL_STORE_FAILED", `cannot write the credential to ${path}`, {
          hint: `check that ${configDir} is yours and writable`,
          cause: error,
        });
      }
    },

    async remove() {
      try {
        await rm(path);
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
        throw new BottleError("CREDENTIAL_STORE_FAILED", `cannot remove ${path}`, { cause: error });
      }
    },
  };
}

function refuse(path: string, why: string): BottleError {
  return new BottleError("CREDENTIAL_STORE_FAILED", `refusing the stored credential ${path}: ${why}`, {
    hint: `remove it (rm ${path}) and run \`claude-bottle login\` again`,
  });
}

/** The part of @napi-rs/keyring's `Entry` this module uses. */
export interface KeyringEntry {
  getPassword(): string | null | undefined;
  setPassword(password: string): void;
  deletePassword(): boolean;
}

export const keyringService = "claude-bottle";
export const keyringAccount = "anthropic-credential";

/** The OS credential store, through one keyring entry. */
export function keyringCredentialStore(entry: KeyringEntry, description: string): CredentialStore {
  const failed = (what: string, error: unknown) =>
    new BottleError("CREDENTIAL_STORE_FAILED", `${what} ${description} failed: ${(error as Error).message}`, {
      hint: "unlock it and run again, or keep the credential in a file: CLAUDE_BOTTLE_CREDENTIAL_STORE=file",
      cause: error,
    });
  return {
    description,
    async read() {
      let text: string | null | undefined;
      try {
        text = entry.getPassword();
      } catch (error) {
        throw failed("reading the credential from", error);
      }
      return text ? parseStored(text, description) : undefined;
    },
    async write(credential) {
      try {
        entry.setPassword(serialise(credential));
      } catch (error) {
        throw failed("storing the credential in", error);
      }
    },
    async remove() {
      try {
        return entry.deletePassword();
      } catch (error) {
        throw failed("removing the credential from", error);
      }
    },
  };
}

/** Where the stores are chosen from; the machine's own by default. */
export interface StoreEnvironment {
  /** claude-bottle's config folder (the file store's home). */
  configDir: string;
  /** "auto" (the OS store when there is one) or "file". */
  preference: "auto" | "file";
  platform?: NodeJS.Platform;
  env?: NodeJS.ProcessEnv;
  /** Opens the OS store's entry; throws when there is none (default: @napi-rs/keyring). */
  openKeyring?: (platform: NodeJS.Platform) => Promise<KeyringEntry>;
}

export interface Stores {
  /** Where `login` writes and, after the environment, where runs look first. */
  primary: CredentialStore;
  /** The file store, when the primary is the OS store: looked in next, and cleared by `logout`. */
  others: CredentialStore[];
  /** Why the OS store is not used, when it is not and one was looked for. */
  osStoreUnavailable?: string;
}

const osStoreName: Partial<Record<NodeJS.Platform, string>> = {
  darwin: "the macOS Keychain",
  win32: "the Windows Credential Manager",
  linux: "the Secret Service (your desktop keyring)",
  freebsd: "the Secret Service (your desktop keyring)",
};

/** The stores to use here: the OS store when it answers, else the file. */
export async function openCredentialStores(environment: StoreEnvironment): Promise<Stores> {
  const file = fileCredentialStore(environment.configDir);
  if (environment.preference === "file") return { primary: file, others: [] };
  const platform = environment.platform ?? process.platform;
  const env = environment.env ?? process.env;
  const name = osStoreName[platform];
  if (!name)
    return { primary: file, others: [], osStoreUnavailable: `no OS credential store on ${platform}` };
  // Without a session bus there is no Secret Service to ask (a server, a container, an SSH login).
  if ((platform === "linux" || platform === "freebsd") && !env.DBUS_SESSION_BUS_ADDRESS) {
    return {
      primary: file,
      others: [],
      osStoreUnavailable: "no desktop session bus (DBUS_SESSION_BUS_ADDRESS)",
    };
  }
  try {
    const entry = await (environment.openKeyring ?? openNapiKeyring)(platform);
    entry.getPassword(); // a store that cannot even be asked is no store at all
    return { primary: keyringCredentialStore(entry, name), others: [file] };
  } catch (error) {
    return {
      primary: file,
      others: [],
      osStoreUnavailable: `${name} does not answer (${(error as Error).message})`,
    };
  }
}

async function openNapiKeyring(platform: NodeJS.Platform): Promise<KeyringEntry> {
  const module = (await import("@napi-rs/keyring")) as typeof import("@napi-rs/keyring") & {
    default?: typeof import("@napi-rs/keyring");
  };
  const Entry = module.Entry ?? module.default?.Entry;
  // On Linux, keyring's default falls back to the kernel keyring, which forgets everything at
  // reboot; the file is the better fallback, so insist on the Secret Service.
  return new Entry(
    keyringService,
    keyringAccount,
    platform === "linux" || platform === "freebsd" ? { linux: { store: "secret-service" } } : undefined,
  );
}

/** The stored credential and where it was found: the OS store first, then the file. */
export async function readStored(
  stores: Stores,
): Promise<{ credential: StoredCredential; store: CredentialStore } | undefined> {
  for (const store of [stores.primary, ...stores.others]) {
    const credential = await store.read();
    if (credential) return { credential, store };
  }
  return undefined;
}

/**
 * Store the credential in the primary store, and only there (a copy left in the file would outlive
 * a logout from the OS store's point of view). When the OS store refuses it (a keyring with no
 * default collection, say), the file takes it, and the caller says why.
 */
export async function writeStored(
  stores: Stores,
  credential: StoredCredential,
): Promise<{ store: CredentialStore; osStoreRefused?: string }> {
  const [file] = stores.others;
  try {
    await stores.primary.write(credential);
  } catch (error) {
    if (!file) throw error;
    await file.write(credential);
    return { store: file, osStoreRefused: (error as Error).message };
  }
  for (const other of stores.others) await other.remove().catch(() => false);
  return { store: stores.primary };
}

export interface CredentialSource {
  kind: CredentialKind;
  /** Where it comes from, for doctor: "the environment (ANTHROPIC_API_KEY)", a store's description. */
  source: string;
  /** The environment variable it was found in, when it came from the environment. */
  variable?: string;
}

/** The credential in the environment, if any: it comes before any stored one. */
export function environmentCredential(env: NodeJS.ProcessEnv): CredentialSource | undefined {
  for (const name of secretNames) {
    if (env[name]) {
      return {
        kind: name === "ANTHROPIC_API_KEY" ? "api-key" : "oauth-token",
        source: `the environment (${name})`,
        variable: name,
      };
    }
  }
  return undefined;
}

/**
 * The variables the bottle's forwarder gets from the store: none when the environment has a
 * credential (it comes first, and the store is not even asked), else the stored one, if any.
 */
export async function storedCredentialEnv(
  env: NodeJS.ProcessEnv,
  stores: () => Promise<Stores>,
): Promise<{ env: Record<string, string>; source?: CredentialSource }> {
  const fromEnv = environmentCredential(env);
  if (fromEnv) return { env: {}, source: fromEnv };
  const found = await readStored(await stores());
  if (!found) return { env: {} };
  const { credential, store } = found;
  return {
    env: { [variableOfKind[credential.kind]]: credential.value },
    source: { kind: credential.kind, source: store.description },
  };
}
