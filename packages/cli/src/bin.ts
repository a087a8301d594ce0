#!/usr/bin/env node
// `--version` is answered before anything else loads: scripts call it often, and loading the
// CLI's dependencies would cost several times node's own start-up.
// A JSON import, not node:fs (whose ES module facade loads streams); the bundle inlines it.
import pkg from "../package.json" with { type: "json" };

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === "--version" || args[0] === "-V")) {
  process.stdout.write(`${pkg.version}\n`);
} else {
  // The CLI loads some 300 modules, and compiling them is a good part of its start-up: Node keeps
  // the compiled code between runs in claude-bottle's cache folder (the user's own, not a shared
  // /tmp), checked against each file's contents. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
  const [{ enableCompileCache }, { join }, { defaultPaths }] = await Promise.all([
    import("node:module"),
    import("node:path"),
    import("@claude-bottle/core/paths"),
  ]);
  enableCompileCache?.(
    join(process.env.CLAUDE_BOTTLE_CACHE_DIR || defaultPaths().cacheDir, "node-compile-cache"),
  );
  const [{ main }, { processIo }] = await Promise.all([import("./main.js"), import("./io.js")]);
  process.exitCode = await main(args, processIo());
}
