/**
 * `claude-bottle trust`: the user's consent, given on the host, to a project config the bottle
 * could have written. See trust-store.ts for what is recorded and why.
 */
import { access } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { BottleError } from "@claude-bottle/core";
import { type Io, table } from "../io.js";
import { isInside } from "../path-inside.js";
import {
  configDirOf,
  describeTrust,
  findProjectConfig,
  type ProjectConfig,
  projectConfigName,
  readProjectConfig,
} from "../settings.js";
import { TrustStore } from "../trust-store.js";
import { redact } from "./config.js";
import { type WorkspaceOptions, workspaceOf } from "./shared.js";

export interface TrustOptions extends WorkspaceOptions {
  untrust?: boolean;
  show?: boolean;
}

export async function trustCommand(io: Io, file: string | undefined, options: TrustOptions): Promise<number> {
  const configDir = configDirOf(io.env, io.cwd);
  const store = new TrustStore(configDir);
  if (options.show) return show(io, store);
  const workspace = workspaceOf(io, options);

  if (options.untrust) {
    const path = file ? resolve(io.cwd, file) : (await findProjectConfig(workspace))?.path;
    if (!path) throw nothingHere(workspace);
    const removed = await store.untrust(path);
    io.stderr.write(`claude-bottle: ${path}: ${removed ? "no longer trusted" : "was not trusted"}\n`);
    return 0;
  }

  let project: ProjectConfig | undefined;
  if (file) {
    const path = resolve(io.cwd, file);
    if (basename(path) !== projectConfigName) {
      throw new BottleError("USAGE", `${path}: only files named ${projectConfigName} are project configs`, {
        hint: "pass the project's claude-bottle.config.json, or run `claude-bottle trust` in the project",
      });
    }
    project = await readProjectConfig(path);
  } else {
    project = await findProjectConfig(workspace);
  }
  if (!project) throw nothingHere(workspace);
  for (const folder of [workspace, resolve(project.path, "..")]) {
    if (isInside(store.path, folder)) {
      throw new BottleError(
        "USAGE",
        `the trust store ${store.path} is inside ${folder}, which a bottle can write; trusting there would mean nothing`,
        { hint: "set CLAUDE_BOTTLE_CONFIG_DIR to a folder outside your projects" },
      );
    }
  }
  const fingerprint = await project.fingerprint();
  await store.trust(project.path, fingerprint);
  const files = Object.entries(fingerprint.files).map(([path, hash]) => `${path}${hash ? "" : " (missing)"}`);
  io.stdout.write(`trusted ${project.path}${files.length ? ` with ${files.join(", ")}` : ""}\n`);
  // What the user has just agreed to, so a planted setting is seen at least once.
  const rows = Object.entries(project.values).map(([key, value]) => [
    `  ${key}`,
    JSON.stringify(redact(value)),
  ]);
  if (rows.length > 0) io.stdout.write(`${table(rows)}\n`);
  const dockerfile = project.values["image.dockerfile"];
  if (typeof dockerfile === "string") {
    const context = (project.values["image.context"] as string | undefined) ?? dirname(dockerfile);
    if (isInside(context, workspace) || isInside(workspace, context)) {
      io.stderr.write(
        `claude-bottle: note: the build context ${context} overlaps the project; what the Dockerfile copies or runs from it is not part of this trust, and the bottle can change it\n`,
      );
    }
  }
  return 0;
}

function nothingHere(workspace: string): BottleError {
  return new BottleError("USAGE", `no ${projectConfigName} in ${workspace} or above`, {
    hint: "there is nothing to trust here; pass the file to trust, or run in the project",
  });
}

async function show(io: Io, store: TrustStore): Promise<number> {
  const records = await store.records();
  const paths = Object.keys(records).sort();
  if (paths.length === 0) {
    io.stderr.write(`claude-bottle: no project config is trusted (${store.path})\n`);
    return 0;
  }
  const rows = [["CONFIG", "STATE", "TRUSTED AT"]];
  for (const path of paths) {
    const exists = await access(path).then(
      () => true,
      () => false,
    );
    let state = "deleted";
    if (exists) {
      state = await readProjectConfig(path)
        .then(async (project) => describeTrust(path, await store.status(path, await project.fingerprint())))
        .catch((error) => (BottleError.is(error) ? "invalid now" : "unreadable"));
    }
    rows.push([path, state, records[path]?.trustedAt ?? ""]);
  }
  io.stdout.write(`${table(rows)}\n`);
  return 0;
}
