/**
 * Start-up: `claude-bottle --version` against `node -e 0` on the same Node binary, and
 * `claude-bottle --help` (which loads the command line itself) for reference.
 */
import { interleave, summary, timeCommand } from "./measure.mjs";

export async function measureStartup({ bin, runs, env, log }) {
  const node = process.execPath;
  log(`startup: ${runs} interleaved runs of node -e 0, claude-bottle --version and --help`);
  const samples = await interleave(
    {
      "node -e 0": () => timeCommand(node, ["-e", "0"], { env }),
      "claude-bottle --version": () => timeCommand(node, [bin, "--version"], { env }),
      "claude-bottle --help": () => timeCommand(node, [bin, "--help"], { env }),
    },
    { runs, warmup: 3 },
  );
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, summary(values)]));
}
