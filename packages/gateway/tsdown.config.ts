import { defineConfig, type UserConfig } from "tsdown";

// The programs that run in containers: the gateway (in its own image: main, which loads serve once
// its configuration is in) and the relay (which the CLI puts on the bottle's `node` command line).
// Each is one self-contained file.
const program = (name: string, clean: boolean): UserConfig => ({
  entry: { [name]: `src/${name}.ts` },
  format: "esm",
  platform: "node",
  target: "node18",
  outDir: "dist/image",
  clean,
  dts: false,
  sourcemap: false,
  deps: { alwaysBundle: [/.*/], onlyBundle: false },
  outputOptions: { codeSplitting: false },
  fixedExtension: true,
});

export default defineConfig([program("main", true), program("serve", false), program("relay", false)]);
