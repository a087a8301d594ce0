// The smolmachines backend against the Backend contract every backend must meet (core's shared
// suite): real engine and registry, the smolvm TEST DOUBLE on PATH (no KVM here).
import { join } from "node:path";
import { integrationEnvironment } from "@claude-bottle/container-engine/testing";
import { backendConformanceSuite } from "@claude-bottle/core/testing";
import { afterAll } from "vitest";
import { smolmachines } from "../src/index.js";
import {
  doubleHost,
  removeDoubleImages,
  shellImageSource,
  suffix,
  tempDir,
  useSmolvmDouble,
} from "./support.js";

const env = integrationEnvironment();
useSmolvmDouble();
const root = await tempDir("conformance");
process.env.SMOLVM_DOUBLE_STATE = join(root, "smolvm-state");
const image = await shellImageSource(env.baseImage, root);
afterAll(async () => {
  const { rm } = await import("node:fs/promises");
  await removeDoubleImages(join(root, "smolvm-state"));
  await rm(root, { recursive: true, force: true });
});

backendConformanceSuite({
  name: "smolmachines backend",
  createBackend: () =>
    smolmachines({
      image,
      cacheDir: join(root, "cache"),
      dataDir: join(root, "data"),
      engine: env.engine,
      host: doubleHost,
    }),
  imageRef: `claude-bottle-test-shell:${suffix()}`,
  // In a VM Claude Code calls the API directly; point it at this machine so the allow-list resolves offline.
  spec: { anthropicBaseUrl: "http://127.0.0.1:9" },
  // smolvm binds the credential to an https host name, and resolves it at start: one reachable here.
  credentialApiUrl: "https://registry.npmjs.org",
  // The agent drops root inside the guest; files it writes must be this user's on the host.
  user: { uid: 4321, gid: 4322 },
});
