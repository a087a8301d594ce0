import type { Availability, Backend } from "@claude-bottle/core";
import { builtinBackends } from "../builtin-backends.js";
import { checkClaudeCode, describeClaudeCode } from "../claude-code.js";
import { type CredentialSource, kindLabel, storedCredentialEnv } from "../credential-store.js";
import { type Io, printJson } from "../io.js";
import { loginWays, storesFor } from "./login.js";
import { backendFor, settingsFor } from "./shared.js";

interface Check extends Availability {
  backend: string;
  selected: boolean;
}

/** Every built-in backend plus the configured one; exit 1 when the selected backend cannot run. */
export async function doctorCommand(
  io: Io,
  options: { workspace?: string; json?: boolean },
): Promise<number> {
  const settings = await settingsFor(io, options);
  const selected = settings.config.backend;
  const names = [...new Set([...Object.keys(builtinBackends), selected])];
  const checks: Check[] = [];
  let selectedBackend: Backend | undefined;
  for (const name of names) {
    try {
      const backend = await backendFor(settings, name);
      if (name === selected) selectedBackend = backend;
      checks.push({ backend: name, selected: name === selected, ...(await backend.checkAvailability()) });
    } catch (error) {
      const { message, hint } = error as { message: string; hint?: string };
      checks.push({
        backend: name,
        selected: name === selected,
        available: false,
        reason: message,
        ...(hint && { fix: hint }),
      });
    }
  }
  const credential = await credentialCheck(io, settings);
  const claudeCode = await checkClaudeCode(settings, selectedBackend);
  if (options.json) printJson(io, { selected, checks, credential, claudeCode });
  else {
    for (const check of checks) {
      const mark = check.available ? "ok  " : "FAIL";
      const title = `${mark} ${check.backend}${check.selected ? " (selected)" : ""}`;
      io.stdout.write(`${title}${check.version ? `  ${check.version}` : ""}\n`);
      if (!check.available) {
        io.stdout.write(`     why: ${check.reason ?? "unknown"}\n`);
        if (check.fix) io.stdout.write(`     fix: ${check.fix}\n`);
      }
      for (const note of check.notes ?? []) io.stdout.write(`     note: ${note}\n`);
    }
    io.stdout.write(`credential: ${describeCredential(credential)}\n`);
    io.stdout.write(`claude code: ${describeClaudeCode(claudeCode)}\n`);
  }
  return checks.find((check) => check.selected)?.available ? 0 : 1;
}

interface CredentialCheck {
  /** Where the credential the forwarder uses comes from; absent when there is none. */
  found?: CredentialSource;
  /** Why the stored credential could not be read. */
  error?: string;
}

/** Which credential a run would use, by source and kind, never by value. */
async function credentialCheck(
  io: Io,
  settings: Awaited<ReturnType<typeof settingsFor>>,
): Promise<CredentialCheck> {
  try {
    const { source } = await storedCredentialEnv(io.env, () => storesFor(settings, io));
    return source ? { found: source } : {};
  } catch (error) {
    const { message, hint } = error as { message: string; hint?: string };
    return { error: hint ? `${message}; ${hint}` : message };
  }
}

function describeCredential(check: CredentialCheck): string {
  if (check.found) return `${kindLabel[check.found.kind]} from ${check.found.source}`;
  if (check.error) return check.error;
  return `none (interactive runs can /login inside the bottle; for headless runs ${loginWays})`;
}
