export * from "./app-dir.js";
export * from "./host-addresses.js";
export * from "./layout.js";
export * from "./protocol.js";

import { readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { gatewayAppDir } from "./app-dir.js";
import { endSocket, meetingDir, type RelayConfig, relayPath, relayPorts } from "./layout.js";
import { relayStarter } from "./relay-start.js";

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

/** How the bottle starts its relay: with Perl first (relay-start.ts), or with Node alone. */
export type RelayStart = "perl" | "node";

/**
 * The bottle's command prefix, before its own command: `node <relay> <config>`, or the Perl starter
 * that runs the command at once beside the relay (relay-start.ts). A command that must wait for the
 * gateway, or a run that publishes ports, starts with the relay itself.
 */
export function bottleBootstrap(config: RelayConfig, start: RelayStart): string[] {
  const relay = [relayPath, JSON.stringify(config)];
  if (start === "node" || config.waitForGateway || config.publish.length > 0) return ["node", ...relay];
  const end = posix.join(meetingDir, config.runDir ?? "", endSocket);
  const ports = [...config.services.map((service) => relayPorts[service]), ...config.hostPorts];
  return ["perl", "-e", relayStarter, "--", ...relay, end, ports.join(",")];
}
