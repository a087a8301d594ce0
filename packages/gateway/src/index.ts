export * from "./app-dir.js";
export * from "./host-addresses.js";
export * from "./layout.js";
export * from "./protocol.js";

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gatewayAppDir } from "./app-dir.js";
import type { RelayConfig } from "./layout.js";

export * from "./bottle-env.js";

let relaySource: string | undefined;

/**
 * The bottle's command prefix: `node --input-type=module -e <relay> -- <config>` before the bottle's
 * own command. The relay's code (relay.ts, bundled) goes on the command line rather than into the
 * shared volume, so the bottle need not wait for the gateway to put it there, and rather than into
 * the agent image, which the user may define; it is about 6 kB, read once from this package's
 * build. Its configuration is the first argument after `--`.
 */
export function bottleBootstrap(config: RelayConfig): string[] {
  relaySource ??= readFileSync(join(gatewayAppDir, "relay.mjs"), "utf8");
  return ["node", "--input-type=module", "-e", relaySource, "--", JSON.stringify(config)];
}
