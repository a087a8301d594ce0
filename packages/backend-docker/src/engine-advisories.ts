/**
 * Known flaws of Docker engines that matter to a bottle, for `claude-bottle doctor`.
 *
 * CVE-2024-29018 (GHSA-mq39-4gv4-mvpx): the engine's embedded DNS forwarded queries from containers
 * on `--internal` networks to the outside, so such a container could still leak data through DNS.
 * Fixed in Moby 26.0.0, 25.0.5 and 23.0.11 (24.x received no fix). Bottles here use no network at
 * all (`--network none`, see container-engine's run-bottle.ts), so they are not exposed; other internal networks on
 * the same engine are, and a user who relies on them should know.
 */
import semver from "semver";

const fixedCve202429018 = ">=26.0.0 || >=25.0.5 <26.0.0 || >=23.0.11 <24.0.0";

/** What `doctor` should say about an engine of this version (e.g. "20.10.24+dfsg1"). */
export function engineNotes(version: string): string[] {
  const parsed = semver.coerce(version);
  if (!parsed) return [`could not read the engine's version (${version}) to check it for known flaws`];
  if (semver.satisfies(parsed, fixedCve202429018)) return [];
  return [
    `Docker Engine ${parsed.version} predates the fix for CVE-2024-29018: containers on --internal networks can reach outside through the engine's DNS. claude-bottle's bottles have no network at all and are not exposed, but other internal networks on this engine are; upgrade to 26.0.0 or later (or 25.0.5, 23.0.11)`,
  ];
}
