import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { fingerprintOf, sha256, TrustStore } from "./trust-store.js";

let root: string;
let store: TrustStore;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "cb-trust-"));
  store = new TrustStore(join(root, "config"));
});
afterEach(() => rm(root, { recursive: true, force: true }));

describe("TrustStore", () => {
  const config = "/work/project/claude-bottle.config.json";

  it("knows a config only at the path and content it was trusted with", async () => {
    const text = '{"network":{"mode":"open"}}';
    expect(await store.status(config, await fingerprintOf(text, []))).toEqual({ state: "new" });
    await store.trust(config, await fingerprintOf(text, []));
    expect(await store.status(config, await fingerprintOf(text, []))).toEqual({ state: "trusted" });
    expect(await store.status(config, await fingerprintOf(`${text} `, []))).toEqual({
      state: "changed",
      changed: [config],
    });
    expect(await store.status("/elsewhere/claude-bottle.config.json", await fingerprintOf(text, []))).toEqual(
      {
        state: "new",
      },
    );
  });

  it("covers the files a config names: changed, appeared or gone", async () => {
    const dockerfile = join(root, "Dockerfile");
    await writeFile(dockerfile, "FROM a\n");
    const trusted = await fingerprintOf("{}", [dockerfile, join(root, "ca.pem")]);
    expect(trusted.files).toEqual({ [dockerfile]: sha256("FROM a\n"), [join(root, "ca.pem")]: null });
    await store.trust(config, trusted);

    await writeFile(dockerfile, "FROM a\nRUN evil\n");
    expect(await store.status(config, await fingerprintOf("{}", [dockerfile, join(root, "ca.pem")]))).toEqual(
      {
        state: "changed",
        changed: [dockerfile],
      },
    );
    await writeFile(dockerfile, "FROM a\n");
    await writeFile(join(root, "ca.pem"), "pem");
    expect(await store.status(config, await fingerprintOf("{}", [dockerfile, join(root, "ca.pem")]))).toEqual(
      {
        state: "changed",
        changed: [join(root, "ca.pem")],
      },
    );
  });

  it("keeps the store private, survives untrust, and refuses a damaged store", async () => {
    await store.trust(config, await fingerprintOf("{}", []));
    expect((await stat(store.path)).mode & 0o777).toBe(0o600);
    expect(Object.keys(await store.records())).toEqual([config]);
    expect(await store.untrust(config)).toBe(true);
    expect(await store.untrust(config)).toBe(false);
    expect(JSON.parse(await readFile(store.path, "utf8"))).toEqual({ version: 1, trusted: {} });

    await writeFile(store.path, "{ not json");
    await expect(store.records()).rejects.toMatchObject({
      code: "INVALID_CONFIG",
      message: expect.stringContaining(`${store.path}: not a claude-bottle trust store`),
    });
  });
});
