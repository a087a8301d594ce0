/**
 * Named groups of hosts users opt into with `network.presets` (`["npm", "github"]`), and the
 * hosts every allow-list starts with.
 *
 * Every host here is one more place a prompt-injected agent can send data to, so presets stay
 * small, list what the tool's default configuration contacts, and are off until chosen.
 */

/**
 * What Claude Code itself needs beyond what claude-bottle's API forwarder serves: nothing.
 * Its model traffic goes to ANTHROPIC_BASE_URL, which is the forwarder on the host, and that
 * forwarder puts the user's credential on every request it passes on. Reaching api.anthropic.com
 * directly would add nothing Claude Code needs and would open a channel out: an agent holding an
 * attacker's API key could upload the workspace to the attacker's account (the Files API).
 * The `anthropic` preset exists for those who want Claude Code's optional traffic anyway.
 */
export const defaultAllow: readonly string[] = [];

export const networkPresets = {
  /** npm's registry (packages and tarballs) and Yarn classic's default registry name for it. */
  npm: ["registry.npmjs.org", "registry.yarnpkg.com"],
  /** pip's defaults: the index at pypi.org, distribution files at files.pythonhosted.org. */
  pypi: ["pypi.org", "files.pythonhosted.org"],
  /**
   * git over HTTPS and the web (github.com), the API the gh CLI uses (api.github.com), archive
   * downloads (codeload.github.com), raw files, release assets and LFS objects
   * (*.githubusercontent.com). GitHub accepts pushes and gists: it is a way out as much as in.
   */
  github: ["github.com", "api.github.com", "codeload.github.com", "*.githubusercontent.com"],
  /** apt on Debian images: the CDN mirror named in debian.sources and the security archive. */
  debian: ["deb.debian.org", "security.debian.org"],
  /** apt on Ubuntu images: the main and the security archives. */
  ubuntu: ["archive.ubuntu.com", "security.ubuntu.com"],
  /** cargo: crates.io's API, its sparse index (index.crates.io) and crate downloads (static.crates.io). */
  crates: ["crates.io", "index.crates.io", "static.crates.io"],
  /** The go command's defaults: GOPROXY=proxy.golang.org and GOSUMDB=sum.golang.org. */
  go: ["proxy.golang.org", "sum.golang.org"],
  /**
   * Claude Code's optional traffic: direct API calls outside ANTHROPIC_BASE_URL, feature flags
   * (statsig.anthropic.com), error reports (sentry.io), and WebFetch's domain check (claude.ai).
   * Not needed for Claude Code to work in a bottle; see `defaultAllow` for what it exposes.
   */
  anthropic: ["api.anthropic.com", "statsig.anthropic.com", "sentry.io", "claude.ai"],
} as const satisfies Record<string, readonly string[]>;

export type NetworkPresetName = keyof typeof networkPresets;
export const networkPresetNames = Object.keys(networkPresets) as [NetworkPresetName, ...NetworkPresetName[]];
