/**
 * Where the gateway and the bottle meet: a volume mounted in both, at the same path. The gateway
 * (trusted code, in an image claude-bottle builds) writes into it; the bottle mounts it read-only.
 * Nothing in here depends on anything but these names, so the relay inside the bottle can share them.
 */

/** Mount point of the shared volume, in the gateway and in the bottle. */
export const meetingDir = "/run/claude-bottle";

/** Unix sockets the gateway listens on: the API forwarder, and the egress proxy in `allowlist` mode. */
export const socketNames = { api: "api.sock", proxy: "proxy.sock" } as const;

/**
 * Written by the gateway last of all, once every socket is in place: the relay in the bottle holds
 * each connection until it is there.
 */
export const readyFile = "ready";

/**
 * A socket of the gateway's, made first of all, that the relay connects to once the bottle's command
 * has ended: the gateway then stops while the engine is still removing the bottle, rather than after
 * (the CLI learns of the end only when the bottle is gone). The bottle can only end its own gateway
 * early this way, cutting itself off.
 */
export const endSocket = "end.sock";

/**
 * A warm gateway (warm.ts) serves every run of one project, each from a folder of its own under this
 * one: `runs/<run id>/` holds that run's sockets, its `ready` marker and its end socket. The run id
 * is random and known only to the CLI that started the run and to its bottle (on the relay's command
 * line), and this folder can be traversed but not listed (mode 0311: not even its owner may read
 * it, and a bottle that runs as uid 0 is its owner), so one bottle cannot find another run's
 * sockets.
 */
export const runsDir = "runs";

/** A run's folder in a warm gateway, relative to the meeting folder. */
export function runDir(runId: string): string {
  return `${runsDir}/${runId}`;
}

/** What a run id looks like: the CLI makes them (16 random bytes, base64url), the gateway checks them. */
export const runIdPattern = /^[A-Za-z0-9_-]{22,64}$/;

/**
 * Where a warm gateway takes each run (attach.ts connects there for the CLI): a socket in Linux's
 * abstract namespace, which belongs to the gateway container's network namespace, so no other
 * container reaches it, and which needs no file on the read-only root or in the shared volume.
 */
export const controlSocket = "\0claude-bottle-gateway-control";

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

/**
 * Where the relay's program (relay.ts, bundled) is in the bottle: a file the CLI keeps on the host
 * and mounts read-only (container-engine's relay-file.ts). Node starts a file some 10 ms sooner than
 * the same code given on its command line, and this is on the way to every command.
 */
export const relayPath = "/run/claude-bottle-relay.mjs";

/** The unix socket for the host's port `port` (`--allow-host-port`), in the meeting folder. */
export function hostPortSocket(port: number): string {
  return `host-${port}.sock`;
}
export const hostPortSocketPattern = /^host-(\d{1,5})\.sock$/;

/** The unix socket for the bottle's published port `port`, which the relay creates in `outboundDir`. */
export function publishSocket(port: number): string {
  return `publish-${port}.sock`;
}

/**
 * What the relay is told on its command line (by the CLI, which knows the run's policy before the
 * gateway starts): which of the gateway's services to offer, the allowed host ports and published
 * ports, and whether the command must wait until the gateway is up. Nothing secret: the placeholder
 * and the services' addresses reach the bottle's command as environment variables.
 */
export interface RelayConfig {
  /** The gateway's services to offer on the bottle's loopback (the proxy only in `allowlist` mode). */
  services: ("api" | "proxy")[];
  /** Allowed ports of the user's machine (`--allow-host-port`), each offered at its own number. */
  hostPorts: number[];
  /** The bottle's published ports (`--publish`), served to the gateway through the outbound volume. */
  publish: number[];
  /**
   * Start the command only once the gateway is up: when it could still refuse the run after the
   * bottle started (a published port taken on the host, an unreachable loopback `anthropic.baseUrl`),
   * the command must not have run by then.
   */
  waitForGateway: boolean;
  /**
   * The run's folder in a warm gateway (`runDir`), relative to the meeting folder; absent for a
   * gateway of its own, whose sockets are at the meeting folder's top.
   */
  runDir?: string;
  /**
   * Set by the starter (relay-start.ts), never by the CLI: the sockets it already listens on, by
   * port, that the relay takes over. The starter runs the command itself.
   */
  listenFds?: Record<string, number>;
}
