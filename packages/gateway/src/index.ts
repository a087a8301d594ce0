export * from "./app-dir.js";
export * from "./host-addresses.js";
export * from "./layout.js";
export * from "./protocol.js";

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gatewayAppDir } from "./app-dir.js";
import { type RelayConfig, relayPath } from "./layout.js";

export * from "./bottle-env.js";

let relaySource: string | undefined;

/**
 * The relay's program (relay.ts, bundled; about 8 kB), read once from this package's build: what
 * the CLI writes to the host's cache and mounts into each bottle at `relayPath`. A file on the host
 * rather than in the shared volume, so that the bottle need not wait for the gateway to put it there,
 * and rather than in the agent image, which the user may define.
 */
export function relayProgram(): string {
  relaySource ??= readFileSync(join(gatewayAppDir, "relay.mjs"), "utf8");
  return relaySource;
}

/** The bottle's command prefix: `node <relay> <config>` before the bottle's own command. */
export function bottleBootstrap(config: RelayConfig): string[] {
  return ["node", relayPath, JSON.stringify(config)];
}
