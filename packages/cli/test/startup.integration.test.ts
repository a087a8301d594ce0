// What the built CLI loads for a command that starts no bottle. The egress proxy (proxy-chain) and
// node:http's ES module facade (which pulls in undici) each cost tens of milliseconds and several MB
// at start-up, so they load only when a run starts its host services. See BENCHMARKS.md.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const bin = fileURLToPath(new URL("../dist/bin.js", import.meta.url));
let dir: string;
let hook: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cb-startup-it-"));
  hook = join(dir, "record-loads.mjs");
  // Records every module the process loads: ES modules through a load hook, built-ins from Node's list.
  await writeFile(
    hook,
    `import { registerHooks } from "node:module";
import { writeFileSync } from "node:fs";
const loaded = [];
registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context); } });
process.on("exit", () => writeFileSync(process.env.RECORD_LOADS, JSON.stringify({ loaded, builtins: process.moduleLoadList })));
`,
  );
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function loadsOf(args: string[]) {
  const record = join(dir, `loads-${args.join("-")}.json`);
  const { exitCode, stdout, stderr } = await execa("node", ["--import", hook, bin, ...args], {
    cwd: dir,
    reject: false,
    env: { RECORD_LOADS: record, CLAUDE_BOTTLE_DATA_DIR: join(dir, "data") },
  });
  expect(exitCode, stderr).toBe(0);
  return {
    stdout,
    ...(JSON.parse(await readFile(record, "utf8")) as { loaded: string[]; builtins: string[] }),
  };
}

describe("claude-bottle start-up", () => {
  it.each(["--version", "-V"])("%s prints the version and loads nothing of the CLI", async (flag) => {
    const { version } = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
    const { stdout, loaded } = await loadsOf([flag]);
    expect(stdout).toBe(version);
    // Only bin.js and, in the bundle, the chunk that holds package.json's data.
    const code = loaded.filter(
      (url) => url.endsWith(".js") && !/\/dist\/(bin|package-[\w-]+)\.js$/.test(url),
    );
    expect(code).toEqual([]);
  });

  it.each([
    ["shell", "--dry-run", "--", "true"],
    ["config", "--json"],
  ])("%s %s loads neither the egress proxy nor undici", async (...args) => {
    const { loaded, builtins } = await loadsOf(args);
    // The hook sees the CLI's own modules, so an empty record cannot pass.
    expect(loaded.some((url) => /\/cli\/dist\/main(-[\w-]+)?\.js$/.test(url))).toBe(true);
    // In the bundle the egress proxy's library is the chunk proxy-chain-<hash>.js.
    expect(loaded.filter((url) => url.includes("/proxy-chain"))).toEqual([]);
    expect(builtins.filter((name) => name.includes("undici"))).toEqual([]);
  });
});
