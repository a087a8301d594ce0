import { BottleError } from "@claude-bottle/core";
import { defaultPaths } from "@claude-bottle/core/paths";
import {
  type CredentialKind,
  checkCredential,
  environmentCredential,
  kindLabel,
  openCredentialStores,
  type Stores,
  writeStored,
} from "../credential-store.js";
import type { Io } from "../io.js";
import type { Settings } from "../settings.js";
import { settingsFor } from "./shared.js";

/**
 * The stores the settings choose (credentials.store), in claude-bottle's config folder. The choice
 * is the user's (user config, environment): a project's config file is in the agent's reach, and
 * must not move where the host keeps or looks for its credential.
 */
export function storesFor(settings: Settings, io: Io): Promise<Stores> {
  const fromProject = settings.sources["credentials.store"] === settings.files.project;
  return openCredentialStores({
    configDir: defaultPaths().configDir,
    preference: fromProject ? "auto" : (settings.config.credentials?.store ?? "auto"),
    env: io.env,
  });
}

/** The ways to give claude-bottle a credential, for messages that say there is none. */
export const loginWays =
  "run `claude setup-token` then `claude-bottle login` (Claude subscription), `claude-bottle login` with an API key, or export ANTHROPIC_API_KEY";

const maxInput = 64 * 1024;

/** The credential from stdin: piped in whole, or typed at a prompt that shows nothing. */
async function readCredential(io: Io): Promise<string> {
  if (io.stdin.isTTY) {
    const { read } = await import("read");
    const answer = await read({
      prompt: "Paste your Anthropic API key or the token `claude setup-token` printed (not shown): ",
      silent: true,
      replace: "",
      input: io.stdin,
      output: io.stderr,
    });
    return String(answer).trim();
  }
  let text = "";
  for await (const chunk of io.stdin) {
    text += String(chunk);
    if (text.length > maxInput) break;
  }
  return text.trim();
}

export async function loginCommand(io: Io, options: { workspace?: string; kind?: string }): Promise<number> {
  if (options.kind !== undefined && options.kind !== "api-key" && options.kind !== "oauth-token") {
    throw new BottleError("USAGE", `--kind ${options.kind}: expected api-key or oauth-token`);
  }
  const settings = await settingsFor(io, options);
  const value = await readCredential(io);
  const kind = checkCredential(value, options.kind as CredentialKind | undefined);
  const { store, osStoreRefused } = await writeStored(await storesFor(settings, io), { kind, value });
  if (osStoreRefused) {
    io.stderr.write(`claude-bottle: note: ${osStoreRefused}; using the file instead\n`);
  }
  io.stdout.write(`claude-bottle: stored ${kindLabel[kind]} in ${store.description}\n`);
  const fromEnv = environmentCredential(io.env);
  if (fromEnv) {
    io.stderr.write(
      `claude-bottle: note: ${fromEnv.variable} is set in your environment and comes first while it is\n`,
    );
  }
  return 0;
}

export async function logoutCommand(io: Io, options: { workspace?: string }): Promise<number> {
  const settings = await settingsFor(io, options);
  const stores = await storesFor(settings, io);
  const removedFrom: string[] = [];
  for (const store of [stores.primary, ...stores.others]) {
    if (await store.remove()) removedFrom.push(store.description);
  }
  io.stdout.write(
    removedFrom.length > 0
      ? `claude-bottle: removed the stored credential from ${removedFrom.join(" and ")}\n`
      : "claude-bottle: no stored credential to remove\n",
  );
  return 0;
}
