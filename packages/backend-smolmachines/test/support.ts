// Helpers for the smolmachines integration tests: the smolvm TEST DOUBLE on PATH, a claude-bottle
// session in a child process (test/fixtures/bottle-child.ts), and what a run leaves behind on the engine.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AgentImageSource, RunSpecInput } from "@claude-bottle/core";
import { execa } from "execa";
import type { HostView } from "../src/index.js";

export const fixtures = fileURLToPath(new URL("./fixtures/", import.meta.url));
export const doubleDir = join(fixtures, "smolvm-double");
const packageDir = fileURLToPath(new URL("../", import.meta.url));

/**
 * The machine as the smolvm double sees it: the double runs `machine exec` in containers and needs
 * no KVM, so it boots wherever this test runs. Backends under test take it as their `host` option.
 */
export const doubleHost: HostView = { platform: "linux", arch: process.arch, access: async () => {} };

/** Put the smolvm double first on this process's PATH (children inherit it). */
export function useSmolvmDouble(): void {
  if (!process.env.PATH?.startsWith(doubleDir)) process.env.PATH = `${doubleDir}:${process.env.PATH}`;
}

export const suffix = () => randomBytes(3).toString("hex");

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `cb-smol-${prefix}.`));
}

/** The argv of every smolvm call the double logged. */
export async function smolvmCalls(log: string): Promise<string[][]> {
  const text = await readFile(log, "utf8").catch(() => "");
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { argv: string[] }).argv);
}

/** A Dockerfile context for the busybox shell image, on the base image the tests were given. */
export async function shellImageSource(baseImage: string, dir: string): Promise<AgentImageSource> {
  const context = join(dir, "shell-image");
  await mkdir(context, { recursive: true });
  const dockerfile = (await readFile(join(fixtures, "shell-image", "Dockerfile"), "utf8")).replace(
    /^ARG BASE_IMAGE=.*$/m,
    `ARG BASE_IMAGE=${baseImage}`,
  );
  await writeFile(join(context, "Dockerfile"), dockerfile);
  return { kind: "dockerfile", dockerfile: join(context, "Dockerfile"), context };
}

export interface ChildJob {
  cacheRoot: string;
  image: AgentImageSource;
  imageRef: string;
  run?: RunSpecInput;
  /** Stop for good before or after this prepare step (see bottle-child.ts), to be killed there. */
  pause?: { step: string; when: "before" | "after" };
}

export interface ChildResult {
  sidecar?: string;
  exitCode?: number;
  error?: { code?: string; message: string; hint?: string };
}

export interface Child {
  pid: number;
  /** stdout so far, with the time each chunk arrived. */
  stdout: { at: number; text: string }[];
  stderr: () => string;
  /** Resolves when stderr shows `[step] <title>`. */
  step(title: string): Promise<void>;
  /** Resolves when stderr shows this line. */
  line(text: string): Promise<void>;
  /** Resolves with the exit code (or signal) and the result file's content, if any. */
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; result?: ChildResult; at: number }>;
  /** Send a signal to the child's whole process group (its smolvm, docker and tsx children too). */
  kill(signal: NodeJS.Signals): void;
}

/**
 * Run one claude-bottle session (prepare, then run if the job has one) in its own process group.
 * `wrap` runs it under another command, e.g. `script` for a terminal.
 */
export async function startChild(
  job: ChildJob,
  options: { env?: NodeJS.ProcessEnv; wrap?: (argv: string[]) => string[] } = {},
): Promise<Child> {
  const dir = await tempDir("job");
  const resultFile = join(dir, "result.json");
  await writeFile(join(dir, "job.json"), JSON.stringify({ ...job, resultFile }));
  const argv = [
    process.execPath,
    "--conditions=dev-source",
    "--import",
    "tsx",
    join(fixtures, "bottle-child.ts"),
    join(dir, "job.json"),
  ];
  const [command, ...args] = options.wrap ? options.wrap(argv) : argv;
  const child = spawn(command!, args, {
    cwd: packageDir,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const stdout: Child["stdout"] = [];
  let stderr = "";
  const waiters: { line: string; resolve: () => void }[] = [];
  child.stdout.on("data", (chunk: Buffer) => stdout.push({ at: Date.now(), text: chunk.toString("utf8") }));
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
    for (const waiter of waiters) if (stderr.includes(`${waiter.line}\n`)) waiter.resolve();
  });
  const exit = new Promise<Awaited<Child["exit"]>>((resolve) => {
    child.on("close", async (code, signal) => {
      const at = Date.now();
      const text = await readFile(resultFile, "utf8").catch(() => undefined);
      resolve({ code, signal, at, ...(text && { result: JSON.parse(text) as ChildResult }) });
    });
  });
  const waitForLine = (line: string) =>
    new Promise<void>((resolve, reject) => {
      if (stderr.includes(`${line}\n`)) return resolve();
      waiters.push({ line, resolve });
      void exit.then(({ result }) =>
        reject(new Error(`the child exited before "${line}": ${JSON.stringify(result)}\n${stderr}`)),
      );
    });
  return {
    pid: child.pid!,
    stdout,
    stderr: () => stderr,
    step: (title) => waitForLine(`[step] ${title}`),
    line: (text) => waitForLine(text),
    exit,
    kill: (signal) => process.kill(-child.pid!, signal),
  };
}

export { removeDoubleImages } from "./fixtures/double-images.js";

export async function removeContainers(names: string[]): Promise<void> {
  if (names.length > 0) await execa("docker", ["rm", "--force", ...names], { reject: false });
}
