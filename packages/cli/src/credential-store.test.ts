import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  checkCredential,
  credentialKindOf,
  fileCredentialStore,
  type KeyringEntry,
  openCredentialStores,
  readStored,
  storedCredentialEnv,
  writeStored,
} from "./credential-store.js";

const apiKey = `sk-ant-api03-${randomBytes(24).toString("base64url")}`;
const oauthToken = `sk-ant-oat01-${randomBytes(24).toString("base64url")}`;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cb-cred-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** Runs `work` and returns the error it throws, so tests can check the error never holds the secret. */
async function errorOf(work: () => unknown): Promise<{ code?: string; message: string; hint?: string }> {
  try {
    await work();
  } catch (error) {
    return error as { code?: string; message: string; hint?: string };
  }
  throw new Error("expected an error");
}

describe("telling credentials apart", () => {
  it("knows an API key from a setup-token by shape", () => {
    expect(credentialKindOf(apiKey)).toBe("api-key");
    expect(credentialKindOf(oauthToken)).toBe("oauth-token");
    expect(credentialKindOf("gateway-key-123")).toBeUndefined();
    expect(checkCredential(apiKey)).toBe("api-key");
    expect(checkCredential(oauthToken)).toBe("oauth-token");
    expect(checkCredential("gateway-key-123", "api-key")).toBe("api-key");
  });

  it("refuses what cannot be a credential, without repeating it", async () => {
    for (const [value, words] of [
      ["", /no credential given/],
      ["not a key", /spaces, line breaks/],
      [`${apiKey}\n${apiKey}`, /spaces, line breaks/],
      ["sk-ant-admin01-abcdef", /Admin API key/],
      ["gateway-key-123", /neither an Anthropic API key/],
    ] as const) {
      const error = await errorOf(() => checkCredential(value));
      expect(error.code).toBe("USAGE");
      expect(error.message).toMatch(words);
      if (value) expect(`${error.message} ${error.hint}`).not.toContain(value);
    }
  });
});

describe("the file store", () => {
  it("creates the file 0600 even under a permissive umask, and reads back what it wrote", async () => {
    const store = fileCredentialStore(join(dir, "config"));
    const previous = process.umask(0);
    try {
      await store.write({ kind: "api-key", value: apiKey });
    } finally {
      process.umask(previous);
    }
    const path = join(dir, "config", "credential.json");
    expect(store.description).toBe(path);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "config"))).mode & 0o777).toBe(0o700);
    expect(await store.read()).toEqual({ kind: "api-key", value: apiKey });

    await store.write({ kind: "oauth-token", value: oauthToken });
    expect(await store.read()).toEqual({ kind: "oauth-token", value: oauthToken });
    expect(await readFile(path, "utf8")).not.toContain(apiKey);
  });

  it("reads nothing when nothing is stored, and remove says whether there was something", async () => {
    const store = fileCredentialStore(dir);
    expect(await store.read()).toBeUndefined();
    expect(await store.remove()).toBe(false);
    await store.write({ kind: "api-key", value: apiKey });
    expect(await store.remove()).toBe(true);
    expect(await store.read()).toBeUndefined();
  });

  it("refuses a file group or others can read, in one line that names it and what to do", async () => {
    const store = fileCredentialStore(dir);
    await store.write({ kind: "api-key", value: apiKey });
    await chmod(join(dir, "credential.json"), 0o640);
    const error = await errorOf(() => store.read());
    expect(error.code).toBe("CREDENTIAL_STORE_FAILED");
    expect(error.message).toBe(
      `refusing the stored credential ${join(dir, "credential.json")}: group or others may read or change it (mode 0640)`,
    );
    expect(error.hint).toMatch(/claude-bottle login/);
    expect(`${error.message}${error.hint}`).not.toContain(apiKey);
  });

  it("refuses a symbolic link and a file that belongs to someone else", async () => {
    const store = fileCredentialStore(dir);
    await writeFile(join(dir, "elsewhere.json"), JSON.stringify({ kind: "api-key", value: apiKey }), {
      mode: 0o600,
    });
    await symlink(join(dir, "elsewhere.json"), join(dir, "credential.json"));
    expect((await errorOf(() => store.read())).message).toMatch(/: it is a symbolic link$/);

    // Planting a file for another user needs root; CI and this machine's tests run as root.
    expect(process.getuid?.()).toBe(0);
    await rm(join(dir, "credential.json"));
    await store.write({ kind: "api-key", value: apiKey });
    await chown(join(dir, "credential.json"), 1001, 1001);
    expect((await errorOf(() => store.read())).message).toMatch(
      /: it belongs to uid 1001, not to you \(uid 0\)$/,
    );
  });

  it("says a damaged file is unreadable without printing its content", async () => {
    await writeFile(join(dir, "credential.json"), `${apiKey} oops`, { mode: 0o600 });
    const error = await errorOf(() => fileCredentialStore(dir).read());
    expect(error.message).toBe(`the credential stored in ${join(dir, "credential.json")} is not readable`);
    expect(error.message).not.toContain(apiKey);
  });
});

/** An in-memory keyring entry standing in for the OS store in these unit tests. */
function memoryKeyring(): KeyringEntry & { value: string | null } {
  return {
    value: null,
    getPassword() {
      return this.value;
    },
    setPassword(password) {
      this.value = password;
    },
    deletePassword() {
      const had = this.value !== null;
      this.value = null;
      return had;
    },
  };
}

describe("choosing the store", () => {
  it("uses the file when asked to, or when a Linux session has no bus", async () => {
    const openKeyring = vi.fn(async () => memoryKeyring());
    const forced = await openCredentialStores({
      configDir: dir,
      preference: "file",
      platform: "darwin",
      openKeyring,
    });
    expect(forced.primary.description).toBe(join(dir, "credential.json"));
    const headless = await openCredentialStores({
      configDir: dir,
      preference: "auto",
      platform: "linux",
      env: {},
      openKeyring,
    });
    expect(headless.primary.description).toBe(join(dir, "credential.json"));
    expect(headless.osStoreUnavailable).toMatch(/no desktop session bus/);
    expect(openKeyring).not.toHaveBeenCalled();
  });

  it("uses the OS store when it answers, keeping the file as the one to clear", async () => {
    const entry = memoryKeyring();
    const stores = await openCredentialStores({
      configDir: dir,
      preference: "auto",
      platform: "linux",
      env: { DBUS_SESSION_BUS_ADDRESS: "unix:path=/run/user/1000/bus" },
      openKeyring: async () => entry,
    });
    expect(stores.primary.description).toBe("the Secret Service (your desktop keyring)");
    expect(stores.others.map((store) => store.description)).toEqual([join(dir, "credential.json")]);
    await stores.primary.write({ kind: "oauth-token", value: oauthToken });
    expect(await stores.primary.read()).toEqual({ kind: "oauth-token", value: oauthToken });
    expect(await stores.primary.remove()).toBe(true);
  });

  it("falls back to the file when the OS store does not answer, and says why", async () => {
    const stores = await openCredentialStores({
      configDir: dir,
      preference: "auto",
      platform: "darwin",
      openKeyring: async () => ({
        ...memoryKeyring(),
        getPassword: () => {
          throw new Error("User interaction is not allowed");
        },
      }),
    });
    expect(stores.primary.description).toBe(join(dir, "credential.json"));
    expect(stores.osStoreUnavailable).toBe(
      "the macOS Keychain does not answer (User interaction is not allowed)",
    );
  });
});

describe("writing and reading through the chosen stores", () => {
  const osStores = (entry: KeyringEntry) =>
    openCredentialStores({
      configDir: dir,
      preference: "auto",
      platform: "darwin",
      openKeyring: async () => entry,
    });

  it("keeps one copy: in the OS store, with an older file copy removed", async () => {
    await fileCredentialStore(dir).write({ kind: "api-key", value: apiKey });
    const stores = await osStores(memoryKeyring());
    expect((await writeStored(stores, { kind: "oauth-token", value: oauthToken })).store.description).toBe(
      "the macOS Keychain",
    );
    expect(await fileCredentialStore(dir).read()).toBeUndefined();
    expect(await readStored(stores)).toMatchObject({
      credential: { kind: "oauth-token", value: oauthToken },
    });
  });

  it("falls back to the file when the OS store refuses the write, and finds it there", async () => {
    const refusing = {
      ...memoryKeyring(),
      setPassword: () => {
        throw new Error("Secret Service: no result found");
      },
    };
    const stores = await osStores(refusing);
    const written = await writeStored(stores, { kind: "api-key", value: apiKey });
    expect(written.store.description).toBe(join(dir, "credential.json"));
    expect(written.osStoreRefused).toBe(
      "storing the credential in the macOS Keychain failed: Secret Service: no result found",
    );
    const found = await readStored(stores);
    expect(found?.credential).toEqual({ kind: "api-key", value: apiKey });
    expect(found?.store.description).toBe(join(dir, "credential.json"));
  });
});

describe("precedence", () => {
  const fileStores = () => openCredentialStores({ configDir: dir, preference: "file" });

  it("takes a credential in the environment first and does not even open the store", async () => {
    await fileCredentialStore(dir).write({ kind: "api-key", value: apiKey });
    const stores = vi.fn(fileStores);
    for (const name of ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"]) {
      const found = await storedCredentialEnv({ [name]: "from-env" }, stores);
      expect(found).toEqual({ env: {}, source: expect.objectContaining({ variable: name }) });
    }
    expect(stores).not.toHaveBeenCalled();
  });

  it("falls back to the stored credential, under the variable its kind needs", async () => {
    await fileCredentialStore(dir).write({ kind: "api-key", value: apiKey });
    expect(await storedCredentialEnv({ ANTHROPIC_API_KEY: "" }, fileStores)).toEqual({
      env: { ANTHROPIC_API_KEY: apiKey },
      source: { kind: "api-key", source: join(dir, "credential.json") },
    });
    await fileCredentialStore(dir).write({ kind: "oauth-token", value: oauthToken });
    expect((await storedCredentialEnv({}, fileStores)).env).toEqual({ CLAUDE_CODE_OAUTH_TOKEN: oauthToken });
  });

  it("finds nothing when nothing is anywhere", async () => {
    await mkdir(join(dir, "empty"));
    expect(await storedCredentialEnv({}, fileStores)).toEqual({ env: {} });
  });
});
