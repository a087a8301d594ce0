import { isIP, isIPv4 } from "node:net";
import { z } from "zod";
import { BottleError } from "./errors.js";
import {
  defaultAllow,
  type NetworkPresetName,
  networkPresetNames,
  networkPresets,
} from "./network-presets.js";

/**
 * Where the bottle may connect. `allowlist` (the default) lets it reach only the hosts in `allow`;
 * `open` lets it reach anything; `none` gives it no network at all.
 *
 * An `allow` entry is a host name (`api.anthropic.com`), a wildcard that matches every subdomain
 * (`*.npmjs.org`, which does not match `npmjs.org` itself), an IP address, or a CIDR block.
 * `presets` name groups of hosts from network-presets.ts (`npm`, `pypi`, `github`...).
 */
export const networkModes = ["allowlist", "open", "none"] as const;
export type NetworkMode = (typeof networkModes)[number];

/**
 * One label of a DNS name, lower case: 1 to 63 letters, digits and hyphens, no hyphen at either
 * end. Host names in allow rules are made of these, and so are the bottle names users choose.
 */
export const dnsLabel = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

export function parseAllowEntry(entry: string): AllowRule | undefined {
  const value = entry.trim().toLowerCase();
  if (value.includes("/")) {
    const [address, bits] = value.split("/", 2) as [string, string];
    const family = isIP(address) as 0 | 4 | 6;
    const prefix = Number(bits);
    if (family === 0 || !/^\d+$/.test(bits) || prefix > (family === 4 ? 32 : 128)) return undefined;
    return { kind: "cidr", address, prefix, family };
  }
  const family = isIP(value) as 0 | 4 | 6;
  if (family !== 0) return { kind: "cidr", address: value, prefix: family === 4 ? 32 : 128, family };
  const wildcard = value.startsWith("*.");
  const name = wildcard ? value.slice(2) : value;
  const labels = name.split(".");
  if (name.length > 253 || labels.length < 1 || !labels.every((label) => dnsLabel.test(label)))
    return undefined;
  return wildcard ? { kind: "suffix", domain: name } : { kind: "host", host: name };
}

export type AllowRule =
  | { kind: "host"; host: string }
  | { kind: "suffix"; domain: string }
  | { kind: "cidr"; address: string; prefix: number; family: 4 | 6 };

export const allowEntrySchema = z.string().refine((entry) => parseAllowEntry(entry) !== undefined, {
  message: "expected a host name, a *.domain wildcard, an IP address or a CIDR block",
});

export const networkPresetSchema = z.enum(networkPresetNames);

/** A TCP port number. */
export const portSchema = z.number().int().min(1).max(65_535);

/** A port of the bottle made reachable from the host, on the host's 127.0.0.1 at `hostPort`. */
export const publishedPortSchema = z.object({ port: portSchema, hostPort: portSchema });
export type PublishedPort = z.infer<typeof publishedPortSchema>;

/** `PORT` or `PORT:HOSTPORT` (as `--publish` and `network.publish` take it), or undefined if neither. */
export function parsePublishEntry(entry: string | number): PublishedPort | undefined {
  const text = String(entry).trim();
  const match = /^(\d{1,5})(?::(\d{1,5}))?$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[1]);
  const hostPort = Number(match[2] ?? match[1]);
  const ok = (n: number) => n >= 1 && n <= 65_535;
  return ok(port) && ok(hostPort) ? { port, hostPort } : undefined;
}

export const publishEntrySchema = z
  .union([z.number(), z.string()])
  .refine((entry) => parsePublishEntry(entry) !== undefined, {
    message: "expected PORT or PORT:HOSTPORT, ports from 1 to 65535",
  });

export const networkPolicySchema = z.object({
  mode: z.enum(networkModes).default("allowlist"),
  allow: z.array(allowEntrySchema).default([]),
  presets: z.array(networkPresetSchema).optional(),
  /**
   * Ports of the user's machine the bottle may reach, each on its own loopback at the same port
   * (`--allow-host-port`): one service each, and nothing else of the host.
   */
  hostPorts: z.array(portSchema).optional(),
  /** Ports of the bottle reachable from the host's 127.0.0.1 (`--publish`). */
  publish: z
    .array(publishedPortSchema)
    .refine((list) => new Set(list.map((entry) => entry.hostPort)).size === list.length, {
      message: "two published ports use the same host port",
    })
    .optional(),
});
export type NetworkPolicy = z.infer<typeof networkPolicySchema>;
export type NetworkPolicyInput = z.input<typeof networkPolicySchema>;

/** What a runtime enforces for one run, with the allow-list spelled out for `allowlist`. */
export type NetworkAccess =
  | { mode: "open" }
  | { mode: "none" }
  | {
      mode: "allowlist";
      /** Every entry in force, normalised and without duplicates: defaults, presets, `allow`, extras. */
      entries: string[];
      /** Exact host names. */
      hosts: string[];
      /** Domains whose subdomains are allowed (from `*.domain`; the domain itself is not). */
      domains: string[];
      /** Address blocks, single addresses as /32 or /128. */
      cidrs: string[];
    };

/**
 * The effective network access of a run: the defaults (network-presets.ts), the chosen presets,
 * `allow`, and per-run extras (`claude-bottle run --allow HOST`), in that order. Backends map the
 * result onto their runtime; this is the one place the list is put together.
 */
export function resolveNetworkAccess(
  policy: NetworkPolicyInput,
  extras: readonly string[] = [],
): NetworkAccess {
  const mode = policy.mode ?? "allowlist";
  if (mode !== "allowlist") return { mode };
  const presetHosts = (policy.presets ?? []).flatMap((name: NetworkPresetName) => networkPresets[name]);
  const access = {
    mode,
    entries: [] as string[],
    hosts: [] as string[],
    domains: [] as string[],
    cidrs: [] as string[],
  };
  const seen = new Set<string>();
  for (const entry of [...defaultAllow, ...presetHosts, ...(policy.allow ?? []), ...extras]) {
    const rule = parseAllowEntry(entry);
    if (!rule) throw invalidAllowEntry(entry);
    const key =
      rule.kind === "host"
        ? rule.host
        : rule.kind === "suffix"
          ? `*.${rule.domain}`
          : `${rule.address}/${rule.prefix}`;
    if (seen.has(key)) continue;
    seen.add(key);
    access.entries.push(key);
    if (rule.kind === "host") access.hosts.push(rule.host);
    else if (rule.kind === "suffix") access.domains.push(rule.domain);
    else access.cidrs.push(key);
  }
  return access;
}

function invalidAllowEntry(entry: string, code: "USAGE" | "INVALID_CONFIG" = "INVALID_CONFIG"): BottleError {
  return new BottleError(
    code,
    `${JSON.stringify(entry)} is not a host name, a *.domain wildcard, an IP address or a CIDR block`,
    { hint: "write e.g. example.com, *.example.com, 192.0.2.7 or 10.0.0.0/8" },
  );
}

/**
 * Whether a URL's host names this machine's loopback: localhost and its subdomains, 127.0.0.0/8,
 * ::1 (with or without the brackets a URL puts around it). What a bottle means by such a URL is
 * never its own loopback, so each backend decides how the bottle reaches the user's machine instead.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (bare === "localhost" || bare.endsWith(".localhost") || bare === "::1") return true;
  // isIPv4, not isIP: for a name, isIP also tries IPv6's pattern, whose first use costs a run some 3 ms.
  return bare.startsWith("127.") && isIPv4(bare);
}
