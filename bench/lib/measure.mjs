/**
 * Timing helpers shared by the benchmark groups: run commands, interleave the variants of one
 * comparison, and summarise samples as a median with its spread.
 */
import { spawn } from "node:child_process";

/** Milliseconds since an arbitrary start, with sub-millisecond resolution. */
export const now = () => Number(process.hrtime.bigint()) / 1e6;

export const round = (value, digits = 1) => {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
};

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Median, minimum and maximum of `samples`, plus the samples themselves. */
export function summary(samples, digits = 1) {
  return {
    median: round(median(samples), digits),
    min: round(Math.min(...samples), digits),
    max: round(Math.max(...samples), digits),
    samples: samples.map((value) => round(value, digits)),
  };
}

/**
 * Run each variant `runs` times, interleaved: one sample of every variant per round, the order
 * rotating from round to round so that no variant always runs first (or right after a particular
 * other). `warmup` rounds run first and are not recorded. Each variant is an async function that
 * resolves with a number (a duration in ms, say) or with an object of numbers (steps).
 */
export async function interleave(variants, { runs, warmup = 1, onRound } = {}) {
  const names = Object.keys(variants);
  const samples = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = -warmup; round < runs; round++) {
    const shift = ((round % names.length) + names.length) % names.length;
    const order = [...names.slice(shift), ...names.slice(0, shift)];
    for (const name of order) {
      const value = await variants[name]();
      if (round >= 0) samples[name].push(value);
    }
    onRound?.(round);
  }
  return samples;
}

/**
 * Run a command to completion and resolve with its wall time in ms. Rejects when it exits non-zero
 * (a benchmark of a failing command measures nothing), with its stderr in the message.
 */
export function timeCommand(command, args, { env, cwd, expectExit = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const started = now();
    const child = spawn(command, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const keep = (chunk) => {
      output = (output + chunk).slice(-4000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const elapsed = now() - started;
      if (code === expectExit) resolve(elapsed);
      else
        reject(
          new Error(
            `${command} ${args.join(" ")} exited ${code ?? signal} (expected ${expectExit}):\n${output.trim()}`,
          ),
        );
    });
  });
}

/** Run a command, resolve with its stdout; reject on a non-zero exit. */
export function output(command, args, { env, cwd } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args.join(" ")} exited ${code}:\n${stderr.trim()}`));
    });
  });
}

/** Time several commands run one after another (a raw `docker build` then `docker run`). */
export async function timeSequence(commands, options) {
  const started = now();
  for (const [command, args] of commands) await timeCommand(command, args, options);
  return now() - started;
}
