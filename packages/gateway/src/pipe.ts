import type { Socket } from "node:net";

/**
 * Join two connections byte for byte, both ways, and close both as soon as either ends or fails.
 * The gateway (unix socket -> its services) and the relay in the bottle (loopback -> unix socket)
 * both join connections this way; each is bundled into a file of its own.
 */
export function joinConnections(inbound: Socket, outbound: Socket): void {
  inbound.pipe(outbound).pipe(inbound);
  const close = () => {
    inbound.destroy();
    outbound.destroy();
  };
  inbound.on("error", close);
  outbound.on("error", close);
  inbound.on("close", close);
  outbound.on("close", close);
}
