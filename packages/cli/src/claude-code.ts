/**
 * The Claude Code release that goes into the agent image: `claudeCode.version` as configured, with
 * a dist-tag (`latest`) resolved to the version it names today (see core's claude-code-version.ts),
 * and what `doctor` says about it.
 */
import type { Backend } from "@claude-bottle/core";
import {
  isExactVersion,
  type ResolvedClaudeCodeVersion,
  resolveClaudeCodeVersion,
} from "@claude-bottle/core/claude-code-version";
import { imageRefOf } from "./bottle-setup.js";
import type { Io } from "./io.js";
import type { Settings } from "./settings.js";

/** The settings with `claudeCode.version` an exact version, resolved when it names a dist-tag. */
export async function withResolvedClaudeCode(settings: Settings, io: Io): Promise<Settings> {
  const requested = settings.config.claudeCode?.version;
  if (!requested || settings.config.image?.use || isExactVersion(requested)) return settings;
  const resolved = await resolveClaudeCodeVersion(requested, { cacheDir: settings.config.cacheDir });
  if (resolved.warning) io.stderr.write(`claude-bottle: warning: ${resolved.warning}\n`);
  return { ...settings, config: { ...settings.config, claudeCode: { version: resolved.version } } };
}

export interface ClaudeCodeCheck {
  /** `claudeCode.version` as configured. */
  configured: string;
  image: string;
  /** The version the image was built with, when it is there and says so. */
  inImage?: string;
  /** The newest release (the registry's `latest`, asked at most once a day). */
  newest?: ResolvedClaudeCodeVersion;
  /** Why the newest release is not known. */
  newestUnknown?: string;
}

/** What `doctor` says of Claude Code: in the selected backend's image (when it can tell), and the newest. */
export async function checkClaudeCode(
  settings: Settings,
  backend: Pick<Backend, "claudeCodeVersionIn"> | undefined,
): Promise<ClaudeCodeCheck> {
  const image = imageRefOf(settings);
  const configured = settings.config.claudeCode?.version ?? "";
  const label = await backend?.claudeCodeVersionIn?.(image).catch(() => undefined);
  const inImage = label && isExactVersion(label) ? label : undefined;
  try {
    const newest = await resolveClaudeCodeVersion("latest", { cacheDir: settings.config.cacheDir });
    return { configured, image, ...(inImage && { inImage }), newest };
  } catch (error) {
    return { configured, image, ...(inImage && { inImage }), newestUnknown: (error as Error).message };
  }
}

export function describeClaudeCode(check: ClaudeCodeCheck): string {
  const inImage = check.inImage ? `${check.inImage} in ${check.image}` : `not known in ${check.image}`;
  if (!check.newest) return `${inImage}; newest unknown (${check.newestUnknown})`;
  const newest = `newest ${check.newest.version} (latest as of ${check.newest.resolvedAt})`;
  if (!check.inImage || check.inImage === check.newest.version) return `${inImage}; ${newest}`;
  const next =
    check.configured === "latest"
      ? "the next run rebuilds with it"
      : `claudeCode.version is ${check.configured}; set it to latest to follow new releases`;
  return `${inImage}; ${newest}: ${next}`;
}
