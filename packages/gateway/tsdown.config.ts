import { defineConfig, type UserConfig } from "tsdown";

// The two programs that run in containers: the gateway (in its own image) and the relay (copied by
// the gateway into the folder it shares with the bottle). Each is one self-contained file.
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

export default defineConfig([program("main", true), program("relay", false)]);
