/**
 * Start-up: `claude-bottle --version` against `node -e 0` on the same Node binary, and
 * `claude-bottle --help` (which loads the command line itself) for reference.
 */
import { interleave, summary, timeCommand } from "./measure.mjs";

export async function measureStartup({ bin, baselineBin, runs, env, log }) {
  const node = process.execPath;
  log(`startup: ${runs} interleaved runs of node -e 0, claude-bottle --version and --help`);
  const variants = {
    "node -e 0": () => timeCommand(node, ["-e", "0"], { env }),
    "claude-bottle --version": () => timeCommand(node, [bin, "--version"], { env }),
    "claude-bottle --help": () => timeCommand(node, [bin, "--help"], { env }),
  };
  if (baselineBin) {
    variants["baseline: claude-bottle --version"] = () =>
      timeCommand(node, [baselineBin, "--version"], { env });
    variants["baseline: claude-bottle --help"] = () => timeCommand(node, [baselineBin, "--help"], { env });
  }
  const samples = await interleave(variants, { runs, warmup: 3 });
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, summary(values)]));
}
