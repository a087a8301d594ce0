import { defineConfig } from "tsdown";

// The CLI ships as one bundle with lazily loaded chunks: loading ~300 modules one by one costs
// more start-up time and memory than the work of most commands (see BENCHMARKS.md).
export default defineConfig({
  entry: { bin: "src/bin.ts" },
  format: "esm",
  platform: "node",
  target: "node22",
  outDir: "dist",
  clean: true,
  dts: false,
  sourcemap: true,
  // Everything is bundled but @napi-rs/keyring (the OS credential store), whose native binary comes
  // in per-platform npm packages: it stays a dependency, imported only by login, logout and runs
  // without a credential in the environment.
  deps: { alwaysBundle: (id) => !id.startsWith("@napi-rs/keyring"), onlyBundle: false },
  shims: true,
  // The egress proxy's library gets a chunk of its own, loaded only when a run starts its host services.
  outputOptions: { codeSplitting: { groups: [{ name: "proxy-chain", test: /[\\/]proxy-chain[\\/]/ }] } },
  fixedExtension: false,
});
