/**
 * This machine's own addresses, loopback and link-local aside: what a container must not reach
 * when it means the machine that runs claude-bottle (the gateway's proxy refuses them even for
 * allowed names, and its address guard refuses them as this machine's).
 *
 * Node's `networkInterfaces()` lists only interfaces that are up and running, and a bridge with no
 * container attached (docker0 between runs, another engine's network) is down; yet its address is
 * still this machine's, and a packet sent to it is delivered here. So on Linux the kernel's own
 * lists are read: IPv4 local routes from /proc/net/fib_trie, every IPv6 address from
 * /proc/net/if_inet6. Elsewhere (macOS, Windows) Node's list is what there is.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";

export function hostAddresses(): string[] {
  const fromNode = Object.values(networkInterfaces())
    .flatMap((entries) => entries ?? [])
    .filter((entry) => !entry.internal && !entry.address.includes("%"))
    .map((entry) => entry.address);
  return [...new Set([...fromNode, ...kernelAddresses()])];
}

/** The addresses the kernel lists that Node's list may lack (Linux; none elsewhere). */
function kernelAddresses(): string[] {
  return [...localIpv4Of(readOrEmpty("/proc/net/fib_trie")), ...ipv6Of(readOrEmpty("/proc/net/if_inet6"))];
}

/**
 * `os.networkInterfaces()` with one more entry, "kernel", holding the addresses of interfaces that
 * are down: the shape the egress proxy's address guard reads, so it refuses those too.
 */
export function allInterfaces(): ReturnType<typeof networkInterfaces> {
  const interfaces = networkInterfaces();
  const kernel = kernelAddresses().map((address) => ({
    address,
    netmask: isIP(address) === 4 ? "255.255.255.255" : "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    family: isIP(address) === 4 ? ("IPv4" as const) : ("IPv6" as const),
    mac: "00:00:00:00:00:00",
    internal: false,
    cidr: `${address}/${isIP(address) === 4 ? 32 : 128}`,
    ...(isIP(address) === 6 && { scopeid: 0 }),
  }));
  return kernel.length > 0 ? { ...interfaces, kernel: kernel as never } : interfaces;
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/** The IPv4 addresses /proc/net/fib_trie marks `/32 host LOCAL`, 127/8 aside. */
export function localIpv4Of(fibTrie: string): string[] {
  const found = new Set<string>();
  let last: string | undefined;
  for (const line of fibTrie.split("\n")) {
    const leaf = /\|--\s+(\d+\.\d+\.\d+\.\d+)/.exec(line);
    if (leaf) last = leaf[1];
    else if (last && /\/32 host LOCAL/.test(line) && !last.startsWith("127.")) found.add(last);
  }
  return [...found];
}

/** The addresses in /proc/net/if_inet6 (32 hex digits each), loopback and link-local (fe80::/10) aside. */
export function ipv6Of(ifInet6: string): string[] {
  const found: string[] = [];
  for (const line of ifInet6.split("\n")) {
    const hex = line.trim().split(/\s+/)[0];
    if (!hex || !/^[0-9a-f]{32}$/i.test(hex)) continue;
    const address = hex
      .match(/.{4}/g)!
      .join(":")
      .replace(/\b0+(?=[0-9a-f])/gi, "");
    // Eight groups of hex digits are an IPv6 address as they stand (no isIP: its IPv6 pattern's
    // first use costs some 3 ms of every run's start).
    if (address === "0:0:0:0:0:0:0:1" || /^fe[89ab]/i.test(hex)) continue;
    found.push(address);
  }
  return found;
}
