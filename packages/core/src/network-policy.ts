import { isIP } from "node:net";
import { z } from "zod";

/**
 * Where the bottle may connect. `allowlist` (the default) lets it reach only the hosts in `allow`;
 * `open` lets it reach anything; `none` gives it no network at all.
 *
 * An `allow` entry is a host name (`api.anthropic.com`), a wildcard that matches every subdomain
 * (`*.npmjs.org`, which does not match `npmjs.org` itself), an IP address, or a CIDR block.
 */
export const networkModes = ["allowlist", "open", "none"] as const;
export type NetworkMode = (typeof networkModes)[number];

const hostLabel = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

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
  if (name.length > 253 || labels.length < 1 || !labels.every((label) => hostLabel.test(label)))
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

export const networkPolicySchema = z.object({
  mode: z.enum(networkModes).default("allowlist"),
  allow: z.array(allowEntrySchema).default([]),
});
export type NetworkPolicy = z.infer<typeof networkPolicySchema>;
