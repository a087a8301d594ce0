/**
 * The gateway's services, started for one run (session.ts reads the configuration and loads this):
 * core's host services (the API forwarder with the real credential and, in `allowlist` mode, the
 * egress proxy) on the gateway's own loopback, where nothing outside this container reaches them,
 * each offered to the bottle as a unix socket in the volume the two share.
 *
 * Why the services keep listening on TCP behind the sockets: core's forwarder and proxy listen on
 * TCP today; a byte pipe in between keeps them untouched (they can listen on the socket paths
 * directly later).
 */
import { lookup } from "node:dns/promises";
import { chmod, lstat, readFile, rename, rm, writeFile } from "node:fs/promises";
import { connect, createServer, isIP, type Server, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { BottleError } from "@claude-bottle/core/errors";
import { defaultGatewaysOf } from "./host-routes.js";
import { type HostServices, startHostServices } from "./host-services.js";
import { hostPortSocket, outboundDir, publishSocket, readyFile, socketNames } from "./layout.js";
import { joinConnections } from "./pipe.js";
import { type GatewayConfig, gatewayConfigSchema } from "./protocol.js";

/** The default routes' gateways (IPv4 and IPv6): the engine's host, as this container sees it. */
async function defaultGateways(): Promise<string[]> {
  const [routes, routes6] = await Promise.all([
    readFile("/proc/net/route", "utf8").catch(() => ""),
    readFile("/proc/net/ipv6_route", "utf8").catch(() => ""),
  ]);
  return defaultGatewaysOf(routes, routes6);
}

/**
 * This container's own addresses, loopback included: a connection from one of them comes from
 * inside this container's network namespace, where only the gateway runs (and a port forwarder
 * that dials in from there, as rootless Podman's does; pasta, Podman 5's, may use loopback).
 */
function ownAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((entries) => entries ?? [])
    .map((entry) => entry.address.replace(/%.*$/, ""));
}

/** The addresses a name has here, or none. */
async function addressesOf(name: string): Promise<string[]> {
  try {
    return (await lookup(name, { all: true })).map((entry) => entry.address);
  } catch {
    return [];
  }
}

/** Whether `url`'s host accepts a TCP connection within a few seconds. */
function accepts(url: URL): Promise<boolean> {
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ""), port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(5000, () => done(false));
    socket.on("connect", () => done(true));
    socket.on("error", () => done(false));
  });
}

/** A unix socket at `path` whose every connection is piped to `host`:`port` (the gateway's loopback by default). */
async function bridge(path: string, port: number, host = "127.0.0.1"): Promise<Server> {
  await rm(path, { force: true });
  const server = createServer((inbound: Socket) => {
    joinConnections(inbound, connect({ host, port }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  // The bottle runs as the user's id, not the gateway's; the socket must let it connect.
  await chmod(path, 0o666);
  return server;
}

/** Write `content` to `name` in the run's folder so that it appears whole or not at all. */
async function publish(
  dir: string,
  name: string,
  write: (temporary: string) => Promise<void>,
): Promise<void> {
  const temporary = join(dir, `.${name}.tmp`);
  await write(temporary);
  await rename(temporary, join(dir, name));
}

/** An address or address block as a CIDR block for the proxy's forbidden ranges; none if neither. */
function asRange(entry: string): string[] {
  const [address = "", bits] = entry.split("/", 2);
  const family = isIP(address);
  if (family === 0 || (bits !== undefined && !/^\d+$/.test(bits))) return [];
  return [`${address}/${bits ?? (family === 4 ? 32 : 128)}`];
}

/**
 * Listen on `hostPort` on all of this container's interfaces (Docker publishes it on the host's
 * 127.0.0.1 only, see container-engine's gateway-container.ts) and pipe each connection to the bottle's published port,
 * through the socket the relay makes in the outbound volume.
 *
 * That volume is writable by the bottle, which is the adversary: it can put anything at that path,
 * a symlink included, and connect() follows symlinks, in this container's filesystem. So the path
 * is checked to be a socket itself (not a link) just before each connect (the integration test
 * swaps in a link to the API forwarder's socket and gets no answer). What remains is a race: the
 * bottle swapping in a link between the check and the connect. It buys nothing: the volume is
 * mounted in these two containers only, and the only unix sockets in this container are those the
 * gateway offers the bottle anyway (the API forwarder, which passes on only requests carrying this
 * run's placeholder, which only the bottle knows; the proxy; allowed host ports, which this machine
 * reaches directly), so a connection to 127.0.0.1:HOSTPORT could at worst be handed to a service
 * the bottle already uses, with no more than the bottle's own authority.
 * (Connecting the other way round, the relay dialing out to a socket of the gateway's and the
 * gateway pairing connections, would avoid the writable volume; the race above does not need it.)
 */
async function publishPort(port: number, hostPort: number, from: readonly string[]): Promise<Server> {
  const path = join(outboundDir, publishSocket(port));
  const server = createServer((inbound: Socket) => {
    inbound.on("error", () => inbound.destroy());
    // Docker forwards the host's 127.0.0.1:HOSTPORT to this container from the engine host's side
    // of the network (its default route's gateway); rootless Podman's port forwarder dials it from
    // inside this container's network namespace, so from one of this container's own addresses. Other
    // containers on the same network could reach this port at the container's own address, from
    // theirs; they are refused.
    const source = (inbound.remoteAddress ?? "").replace(/^::ffff:/, "");
    if (!from.includes(source)) {
      inbound.destroy();
      return;
    }
    lstat(path).then(
      (info) => {
        if (!info.isSocket()) inbound.destroy();
        else joinConnections(inbound, connect(path));
      },
      () => inbound.destroy(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(hostPort, "0.0.0.0", () => resolve());
  });
  return server;
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/** Where a run's services go, and where its denials are sent. */
export interface ServeOptions {
  /** The run's folder: the meeting folder itself for a gateway of the run's own, `runs/<id>` in a warm one. */
  dir: string;
  /** One line (a denial, as JSON) to the CLI. */
  send(line: string): void;
}

async function start(config: GatewayConfig, options: ServeOptions): Promise<RunningGateway> {
  const published: Server[] = [];
  // First, before the services take ports of their own: a published port is a fixed one.
  try {
    const publish = config.network.publish ?? [];
    const from = publish.length > 0 ? [...(await defaultGateways()), ...ownAddresses()] : [];
    for (const { port, hostPort } of publish) published.push(await publishPort(port, hostPort, from));
  } catch (error) {
    for (const server of published) server.close();
    throw error;
  }
  try {
    return await startServices(config, published, options);
  } catch (error) {
    for (const server of published) server.close();
    throw error;
  }
}

async function startServices(
  config: GatewayConfig,
  published: Server[],
  { dir, send }: ServeOptions,
): Promise<RunningGateway> {
  if (config.probeUpstream && config.anthropicBaseUrl && !(await accepts(new URL(config.anthropicBaseUrl)))) {
    throw new BottleError(
      "RUN_FAILED",
      `the gateway cannot reach anthropic.baseUrl at ${new URL(config.anthropicBaseUrl).host}`,
      config.upstreamHint ? { hint: config.upstreamHint } : {},
    );
  }
  // The proxy must never lead to the engine's host or the CLI's: refuse their addresses even for
  // allowed names. This container's own interfaces are refused by core already.
  const hostAddresses = [
    ...config.cliHostAddresses,
    ...(await defaultGateways()),
    ...(await addressesOf(config.engineHost)),
  ].flatMap(asRange);
  const services = await startHostServices({
    bindHost: "127.0.0.1",
    ...(config.anthropicBaseUrl && { anthropicBaseUrl: config.anthropicBaseUrl }),
    secrets: config.secrets,
    ...(config.placeholder && { placeholder: config.placeholder }),
    network: config.network,
    passthroughCredentials: config.passthroughCredentials,
    // Denials go to the CLI as JSON lines; it writes the run's denial log on its side.
    onDenial: (denial) => send(JSON.stringify(denial)),
    hostRanges: hostAddresses,
  });
  const servers: Server[] = [...published];
  try {
    servers.push(await bridge(join(dir, socketNames.api), portOf(services.apiUrl)));
    // An allowed port of the user's machine: that one port of the engine's host, nothing else.
    for (const port of config.network.hostPorts ?? [])
      servers.push(await bridge(join(dir, hostPortSocket(port)), port, config.engineHost));
    if ((config.network.publish ?? []).length > 0) {
      // The volume's root is root's; the relay runs as the bottle's user and must make its sockets
      // there. Only the bottle and this gateway mount it.
      await chmod(outboundDir, 0o777);
    }
    if (services.proxyUrl) {
      servers.push(await bridge(join(dir, socketNames.proxy), portOf(services.proxyUrl)));
    }
    // Last: the marker tells the relay in the bottle that every socket is in place. The bottle's
    // environment (where these services are, the placeholder) came from the CLI (bottle-env.ts).
    await publish(dir, readyFile, (path) => writeFile(path, "", { mode: 0o644 }));
    return { services, servers };
  } catch (error) {
    for (const server of servers) server.close();
    await services.close();
    throw error;
  }
}

export interface RunningGateway {
  services: HostServices;
  servers: Server[];
}

/** Start everything `line` (the configuration the CLI sent) asks for, in `options.dir`; see session.ts. */
export function serve(line: string, options: ServeOptions): Promise<RunningGateway> {
  return start(gatewayConfigSchema.parse(JSON.parse(line)), options);
}
