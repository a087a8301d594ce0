import { defineConfig, type UserConfig } from "tsdown";

// The programs that run in containers: the gateway (in its own image: main, which loads serve once
// a configuration is in, and warm for a project's warm gateway; attach, which the CLI runs in a warm
// one for each run) and the relay (which the CLI puts on the bottle's `node` command line).
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

export default defineConfig([
  program("main", true),
  program("serve", false),
  program("warm", false),
  program("attach", false),
  program("relay", false),
]);
