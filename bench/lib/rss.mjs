/**
 * Peak memory of the claude-bottle process itself (not the docker CLI it starts, not the bottle):
 * the kernel's high-water mark of its resident set (VmHWM in /proc/PID/status), read every few
 * milliseconds while it runs. The mark only grows, so the last reading is the peak up to a few ms
 * before exit.
 */
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { summary } from "./measure.mjs";

export async function measurePeakRss({ setup, baselineBin, runs, log }) {
  const shell = ["shell", "--backend", "docker", "-q", "--", "true"];
  const commands = {
    "claude-bottle shell -- true (docker)": [setup.cliBin, ...shell],
    "claude-bottle run -- --version (docker)": [
      setup.cliBin,
      "run",
      "--backend",
      "docker",
      "-q",
      "--",
      "--version",
    ],
    "claude-bottle --version": [setup.cliBin, "--version"],
  };
  if (baselineBin) commands["baseline: claude-bottle shell -- true (docker)"] = [baselineBin, ...shell];
  log(`rss: ${runs} runs of ${Object.keys(commands).length} commands, VmHWM polled every 5 ms`);
  const samples = Object.fromEntries(Object.keys(commands).map((name) => [name, []]));
  for (let round = 0; round < runs; round++) {
    for (const [name, args] of Object.entries(commands)) {
      samples[name].push(await peakRssMB(setup, args));
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, summary(values)]));
}

async function peakRssMB(setup, args) {
  const child = spawn(process.execPath, args, {
    env: setup.env,
    cwd: setup.workspace,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code) => resolve(code));
  });
  let running = true;
  exited.then(() => {
    running = false;
  });
  let peakKiB = 0;
  while (running) {
    try {
      const status = await readFile(`/proc/${child.pid}/status`, "utf8");
      const kib = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
      peakKiB = Math.max(peakKiB, kib);
    } catch {
      // The process is gone (or a zombie without memory figures); the loop ends with it.
    }
    await sleep(5);
  }
  const code = await exited;
  if (code !== 0) throw new Error(`${args.join(" ")} exited ${code}:\n${stderr.trim()}`);
  if (peakKiB === 0) throw new Error(`no memory reading for ${args.join(" ")}`);
  // MB as in the target: 10^6 bytes.
  return (peakKiB * 1024) / 1e6;
}
