/**
 * Where the gateway and the bottle meet: a volume mounted in both, at the same path. The gateway
 * (trusted code, in an image claude-bottle builds) writes into it; the bottle mounts it read-only.
 * Nothing in here depends on anything but these names, so the relay inside the bottle can share them.
 */

/** Mount point of the shared volume, in the gateway and in the bottle. */
export const meetingDir = "/run/claude-bottle";

/** Unix sockets the gateway listens on: the API forwarder, and the egress proxy in `allowlist` mode. */
export const socketNames = { api: "api.sock", proxy: "proxy.sock" } as const;

/** The environment the bottle's command gets on top of its own (where the API and the proxy are). */
export const bottleEnvFile = "bottle-env.json";

/**
 * The relay's code, copied here by the gateway last of all: its presence means the gateway is ready,
 * and it keeps the relay's code with the gateway's, out of the agent image (which the user may define).
 */
export const relayFile = "relay.mjs";

/**
 * The loopback ports the relay listens on inside the bottle. The bottle has a network namespace of
 * its own with nothing else in it, so fixed ports cannot clash with another bottle; they are high and
 * unusual so that they are unlikely to clash with a server the agent starts.
 */
export const relayPorts = { api: 47_080, proxy: 47_128 } as const;

/**
 * The second volume, for published ports (`--publish`): the bottle mounts it read-write, because
 * here the relay in the bottle listens and the gateway connects. It holds nothing of the gateway's.
 */
export const outboundDir = "/run/claude-bottle-out";

/** The unix socket for the host's port `port` (`--allow-host-port`), in the meeting folder. */
export function hostPortSocket(port: number): string {
  return `host-${port}.sock`;
}
export const hostPortSocketPattern = /^host-(\d{1,5})\.sock$/;

/** The unix socket for the bottle's published port `port`, which the relay creates in `outboundDir`. */
export function publishSocket(port: number): string {
  return `publish-${port}.sock`;
}

/** The bottle ports to publish, as a JSON array of numbers, in the meeting folder (for the relay). */
export const publishFile = "publish.json";
