import envPaths from "env-paths";

/**
 * claude-bottle's own folders. Defaults follow the platform: XDG folders on Linux,
 * ~/Library/Caches and ~/Library/Application Support on macOS, %LOCALAPPDATA% on Windows.
 */
export interface BottlePaths {
  /** Rebuildable artifacts, e.g. packed VM images. */
  cacheDir: string;
  /** State worth keeping, e.g. each project's Claude Code home. */
  dataDir: string;
  /** Where user-wide config lives. */
  configDir: string;
}

export function defaultPaths(): BottlePaths {
  const paths = envPaths("claude-bottle", { suffix: "" });
  return { cacheDir: paths.cache, dataDir: paths.data, configDir: paths.config };
}
