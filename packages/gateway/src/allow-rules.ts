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
import type { networkInterfaces } from "node:os";
import { type AllowRule, dnsLabel, parseAllowEntry } from "@claude-bottle/core";
import { allInterfaces } from "./host-addresses.js";

/** A connection target, after normalisation. */
export type TargetHost = { kind: "name"; name: string } | { kind: "ip"; address: string; family: 4 | 6 };

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
}

/** Compile allow-list entries; throws on an entry `parseAllowEntry` rejects (configs are validated before). */
export function compileAllowList(entries: readonly string[]): AllowList {
  const hosts = new Set<string>();
  const domains: string[] = [];
  const blocks = new BlockList();
  for (const entry of entries) {
    const rule = parseAllowEntry(entry);
    if (!rule) throw new TypeError(`not an allow-list entry: ${JSON.stringify(entry)}`);
    if (rule.kind === "host") hosts.add(rule.host);
    else if (rule.kind === "suffix") domains.push(rule.domain);
    else {
      blocks.addSubnet(rule.address, rule.prefix, rule.family === 4 ? "ipv4" : "ipv6");
    }
  }
  return {
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
 * Cloud metadata and platform services: reachable from a VM without credentials, and handing out
 * the VM's own credentials. The IPv4 link-local block (169.254.0.0/16: AWS, GCP, Azure, OpenStack,
 * DigitalOcean, Oracle) is refused with the host's own addresses; these are the others.
 */
export const metadataRanges: readonly string[] = [
  "169.254.0.0/16", // link-local: the usual metadata address 169.254.169.254 and its neighbours
  "fd00:ec2::254/128", // AWS IMDS over IPv6
  "fd20:ce::254/128", // Google Cloud metadata over IPv6
  "100.100.100.200/32", // Alibaba Cloud metadata
  "168.63.129.16/32", // Azure WireServer (platform agent and DNS)
  "192.0.0.192/32", // Oracle Cloud's older metadata address
  "100.100.100.100/32", // Tailscale's local service address (MagicDNS), a service of the host
];

/** Ranges that lead back to whatever machine the proxy runs on: loopback, unspecified, link-local, multicast. */
const hostRanges: readonly string[] = [
  "0.0.0.0/8",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "224.0.0.0/4",
  "255.255.255.255/32",
  "::/128",
  "::1/128",
  "fe80::/10",
  "ff00::/8",
];

/** Why an address is never a target: the host itself, a metadata service, or a range the backend forbids. */
export type ForbiddenReason = "host-local" | "metadata" | "forbidden";

export interface AddressGuardOptions {
  /** The machine's interfaces, read again when the last read is older than `cacheMs`; default: os.networkInterfaces and those that are down (allInterfaces). */
  interfaces?: () => ReturnType<typeof networkInterfaces>;
  /** How long one read of the interfaces is trusted; default 1000 ms. */
  cacheMs?: number;
  /** Whether an address leads back to this machine; replaces the built-in check (loopback... and the interfaces). */
  isHostLocal?: (address: string) => boolean;
  /** Further blocks never to reach (CIDR or single addresses): the engine's address pools, the bottle's own subnet. */
  forbiddenRanges?: readonly string[];
  /**
   * Further blocks that count as the host itself, on top of the check above: where the proxy runs in
   * a container, the engine's machine and the user's are elsewhere and must be named (CIDR blocks).
   */
  hostRanges?: readonly string[];
  /** The clock, in ms; default Date.now. */
  now?: () => number;
}

/**
 * The judgement "is this the host or something only the host should reach", made for every
 * connection, not once: interfaces come and go (another bottle's network, docker0 coming up after
 * the proxy started), so they are read again whenever the last read is older than `cacheMs`.
 * No allow rule overrides it. IPv6 forms that embed an IPv4 address (mapped `::ffff:a.b.c.d`,
 * compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) are judged by that
 * IPv4 address as well. Anything that is not an IP address is refused.
 */
export function addressGuard(
  options: AddressGuardOptions = {},
): (address: string) => ForbiddenReason | undefined {
  const readInterfaces = options.interfaces ?? allInterfaces;
  const cacheMs = options.cacheMs ?? 1000;
  const now = options.now ?? Date.now;
  const metadata = blockListOf(metadataRanges);
  const forbidden = blockListOf(options.forbiddenRanges ?? []);
  const namedHost = blockListOf(options.hostRanges ?? []);
  const fixedHost = blockListOf(hostRanges);
  let ownAddresses: BlockList | undefined;
  let readAt = 0;
  const builtInHostLocal = (address: string, family: "ipv4" | "ipv6") => {
    if (fixedHost.check(address, family)) return true;
    if (!ownAddresses || now() - readAt >= cacheMs) {
      ownAddresses = interfaceBlocks(readInterfaces());
      readAt = now();
    }
    return ownAddresses.check(address, family);
  };
  const familyOf = (address: string) => (isIP(address) === 4 ? "ipv4" : "ipv6");
  return (address) => {
    if (isIP(address) === 0) return "forbidden";
    const embedded = embeddedIpv4(address);
    const forms = embedded === undefined ? [address] : [address, embedded];
    const hostLocal = (form: string) =>
      (options.isHostLocal ? options.isHostLocal(form) : builtInHostLocal(form, familyOf(form))) ||
      namedHost.check(form, familyOf(form));
    if (forms.some((form) => metadata.check(form, familyOf(form)))) return "metadata";
    if (forms.some(hostLocal)) return "host-local";
    if (forms.some((form) => forbidden.check(form, familyOf(form)))) return "forbidden";
    return undefined;
  };
}

/**
 * Addresses that lead back to the machine the proxy runs on, from one read of the interfaces:
 * loopback, unspecified, link-local, multicast, cloud metadata and every address of `interfaces`.
 * Kept for callers that want a fixed snapshot; the proxy uses `addressGuard`, which reads the
 * interfaces again as they change.
 */
export function hostLocalCheck(
  interfaces: ReturnType<typeof networkInterfaces> = allInterfaces(),
): (address: string) => boolean {
  const guard = addressGuard({ interfaces: () => interfaces, cacheMs: Number.POSITIVE_INFINITY });
  return (address) => guard(address) !== undefined;
}

function blockListOf(ranges: readonly string[]): BlockList {
  const blocks = new BlockList();
  for (const range of ranges) {
    const rule = parseAllowEntry(range);
    if (rule?.kind !== "cidr") throw new TypeError(`not an address block: ${JSON.stringify(range)}`);
    blocks.addSubnet(rule.address, rule.prefix, rule.family === 4 ? "ipv4" : "ipv6");
  }
  return blocks;
}

function interfaceBlocks(interfaces: ReturnType<typeof networkInterfaces>): BlockList {
  const blocks = new BlockList();
  for (const addresses of Object.values(interfaces)) {
    for (const { address, family } of addresses ?? []) {
      // Scoped link-local addresses ("fe80::1%eth0") are covered by fe80::/10.
      if (!address.includes("%")) blocks.addAddress(address, family === "IPv4" ? "ipv4" : "ipv6");
    }
  }
  return blocks;
}

/** The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if it carries one. */
export function embeddedIpv4(address: string): string | undefined {
  if (isIP(address) !== 6) return undefined;
  const groups = expandIpv6(address);
  const v4 = (high: number, low: number) => `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  const zeros = (from: number, to: number) => groups.slice(from, to).every((group) => group === 0);
  if (zeros(0, 5) && (groups[5] === 0xffff || groups[5] === 0) && !(groups[5] === 0 && zeros(6, 7)))
    return v4(groups[6]!, groups[7]!);
  if (groups[0] === 0x64 && groups[1] === 0xff9b && zeros(2, 6)) return v4(groups[6]!, groups[7]!);
  if (groups[0] === 0x64 && groups[1] === 0xff9b && groups[2] === 1) return v4(groups[6]!, groups[7]!);
  if (groups[0] === 0x2002) return v4(groups[1]!, groups[2]!);
  return undefined;
}

/** Eight 16-bit groups of an IPv6 address (with a trailing dotted IPv4 part, if any, converted). */
function expandIpv6(address: string): number[] {
  let text = address.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const left = head ? head.split(":") : [];
  const right = tail === undefined ? [] : tail ? tail.split(":") : [];
  const missing = 8 - left.length - right.length;
  return [...left, ...Array<string>(tail === undefined ? 0 : missing).fill("0"), ...right].map((group) =>
    Number.parseInt(group, 16),
  );
}
