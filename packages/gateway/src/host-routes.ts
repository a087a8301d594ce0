/**
 * The gateways of a container's default routes, read from the kernel's route tables as
 * /proc/net/route and /proc/net/ipv6_route print them: the address of the engine's host as the
 * container sees it, which the egress proxy must refuse.
 */
export function defaultGatewaysOf(routes: string, routes6: string): string[] {
  const found: string[] = [];
  for (const line of routes.split("\n").slice(1)) {
    const [, destination, gateway] = line.trim().split(/\s+/);
    if (destination !== "00000000" || !gateway || !/^[0-9A-Fa-f]{8}$/.test(gateway) || gateway === "00000000")
      continue;
    // Hex in the kernel's byte order (little-endian on the machines Docker runs on).
    const bytes = gateway.match(/../g)!.map((pair) => Number.parseInt(pair, 16));
    found.push(bytes.reverse().join("."));
  }
  for (const line of routes6.split("\n")) {
    // destination, prefix length, source, source prefix length, next hop, ...
    const [destination, prefix, , , nextHop] = line.trim().split(/\s+/);
    if (destination !== "0".repeat(32) || prefix !== "00" || !nextHop || !/^[0-9a-f]{32}$/i.test(nextHop))
      continue;
    if (/^0+$/.test(nextHop)) continue;
    found.push(nextHop.match(/.{4}/g)!.join(":"));
  }
  return found;
}
