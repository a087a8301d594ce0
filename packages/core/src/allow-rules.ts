/**
 * Matching the hosts a bottle asks for against its allow-list (entries as parsed by
 * `parseAllowEntry` in network-policy.ts).
 *
 * - A host rule (`registry.npmjs.org`) matches that name only.
 * - A wildcard (`*.npmjs.org`) matches every name below the domain, never the domain itself.
 * - A CIDR block or single IP matches IP addresses, including IPv4-mapped IPv6 forms
 *   (`::ffff:10.0.0.1` is 10.0.0.1). It never matches a name: see `egress-proxy.ts` for why the
 *   proxy does not resolve names to try them against CIDR rules.
 *
 * Names are compared case-insensitively and with one trailing dot removed (`NPMJS.org.` is
 * `npmjs.org`). A name that is neither a valid DNS name nor an IP literal matches nothing.
 */
import { BlockList, isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { type AllowRule, parseAllowEntry } from "./network-policy.js";

/** A connection target, after normalisation. */
export type TargetHost = { kind: "name"; name: string } | { kind: "ip"; address: string; family: 4 | 6 };

const dnsLabel = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/**
 * Turn a host as it appears in a URL or a CONNECT line into a target: IPv6 literals lose their
 * brackets and take their canonical form, names are lower-cased and lose one trailing dot. Returns undefined for anything else,
 * including names whose last label is numeric or hexadecimal (`0x7f.1`, `127.1`): resolvers read
 * those as IPv4 addresses in shorthand, and they are no DNS names.
 */
export function parseTargetHost(host: string): TargetHost | undefined {
  const bracketed = host.startsWith("[") && host.endsWith("]");
  const bare = bracketed ? host.slice(1, -1) : host;
  const family = isIP(bare);
  // Zone ids (`fe80::1%eth0`) pick an interface of the proxy's machine: never a valid target.
  if (bare.includes("%")) return undefined;
  // IPv6 in its canonical text form (`::ffff:127.0.0.1` is `::ffff:7f00:1`), as URL parsing writes it.
  if (family === 6)
    return { kind: "ip", address: new URL(`http://[${bare}]`).hostname.slice(1, -1), family: 6 };
  if (bracketed) return undefined;
  if (family === 4) return { kind: "ip", address: bare, family: 4 };
  const name = (bare.endsWith(".") ? bare.slice(0, -1) : bare).toLowerCase();
  if (name.length === 0 || name.length > 253) return undefined;
  const labels = name.split(".");
  if (!labels.every((label) => dnsLabel.test(label))) return undefined;
  const last = labels.at(-1)!;
  if (/^\d+$/.test(last) || /^0x[0-9a-f]*$/.test(last)) return undefined;
  return { kind: "name", name };
}

export interface AllowList {
  /** The host or wildcard rule that admits this (normalised) name, if any. */
  matchName(name: string): AllowRule | undefined;
  /** Whether a CIDR or IP rule covers this address. */
  matchAddress(address: string): boolean;
  /** Whether the list has any CIDR or IP rule at all. */
  readonly hasAddressRules: boolean;
}

/** Compile allow-list entries; throws on an entry `parseAllowEntry` rejects (configs are validated before). */
export function compileAllowList(entries: readonly string[]): AllowList {
  const hosts = new Set<string>();
  const domains: string[] = [];
  const blocks = new BlockList();
  let hasAddressRules = false;
  for (const entry of entries) {
    const rule = parseAllowEntry(entry);
    if (!rule) throw new TypeError(`not an allow-list entry: ${JSON.stringify(entry)}`);
    if (rule.kind === "host") hosts.add(rule.host);
    else if (rule.kind === "suffix") domains.push(rule.domain);
    else {
      blocks.addSubnet(rule.address, rule.prefix, rule.family === 4 ? "ipv4" : "ipv6");
      hasAddressRules = true;
    }
  }
  return {
    hasAddressRules,
    matchName(name) {
      if (hosts.has(name)) return { kind: "host", host: name };
      const domain = domains.find((candidate) => name.endsWith(`.${candidate}`));
      return domain === undefined ? undefined : { kind: "suffix", domain };
    },
    matchAddress(address) {
      const family = isIP(address);
      return family !== 0 && blocks.check(address, family === 4 ? "ipv4" : "ipv6");
    },
  };
}

/**
 * Addresses that lead back to the machine the proxy runs on, or to what only it should reach:
 * loopback, unspecified, link-local (where cloud metadata services live), multicast, and every
 * address of this machine's own interfaces (the Docker gateway among them). A name rule is not
 * enough to reach these; only a CIDR rule that covers the address is.
 */
export function hostLocalCheck(
  interfaces: ReturnType<typeof networkInterfaces> = networkInterfaces(),
): (address: string) => boolean {
  const blocks = new BlockList();
  blocks.addSubnet("0.0.0.0", 8, "ipv4");
  blocks.addSubnet("127.0.0.0", 8, "ipv4");
  blocks.addSubnet("169.254.0.0", 16, "ipv4");
  blocks.addSubnet("224.0.0.0", 4, "ipv4");
  blocks.addSubnet("255.255.255.255", 32, "ipv4");
  blocks.addAddress("::", "ipv6");
  blocks.addAddress("::1", "ipv6");
  blocks.addSubnet("fe80::", 10, "ipv6");
  blocks.addSubnet("ff00::", 8, "ipv6");
  for (const addresses of Object.values(interfaces)) {
    for (const { address, family } of addresses ?? []) {
      // Scoped link-local addresses ("fe80::1%eth0") are covered by the range above.
      if (!address.includes("%")) blocks.addAddress(address, family === "IPv4" ? "ipv4" : "ipv6");
    }
  }
  return (address) => {
    const family = isIP(address);
    return family === 0 || blocks.check(address, family === 4 ? "ipv4" : "ipv6");
  };
}
