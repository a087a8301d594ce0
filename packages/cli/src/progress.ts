/**
 * Progress for slow work, always on stderr so stdout carries only results. On a terminal each
 * step is a spinner with its elapsed time; elsewhere each step is a plain line when it starts and
 * when it ends.
 */
import type { ProgressReporter } from "@claude-bottle/core";

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

const seconds = (since: number) => `${((performance.now() - since) / 1000).toFixed(1)}s`;

/** Plain lines: `claude-bottle: build agent image…` then `claude-bottle: build agent image: done in 12.3s`. */
export function lineProgress(stream: ProgressStream): ProgressReporter {
  return {
    async step(title, work) {
      const started = performance.now();
      stream.write(`claude-bottle: ${title}…\n`);
      try {
        const result = await work();
        stream.write(`claude-bottle: ${title}: done in ${seconds(started)}\n`);
        return result;
      } catch (error) {
        stream.write(`claude-bottle: ${title}: failed after ${seconds(started)}\n`);
        throw error;
      }
    },
  };
}

/** A spinner per step with live elapsed time, and the latest line of detail (build output). */
export async function terminalProgress(
  stream: NodeJS.WritableStream & { columns?: number },
): Promise<ProgressReporter> {
  const { default: ora } = await import("ora");
  let current: { title: string; started: number; spinner: ReturnType<typeof ora> } | undefined;
  let detail = "";
  const render = () => {
    if (!current) return;
    const width = Math.max(20, (stream.columns ?? 80) - current.title.length - 16);
    const line = detail.length > width ? `${detail.slice(0, width - 1)}…` : detail;
    current.spinner.text = `${current.title} (${seconds(current.started)})${line ? `  ${line}` : ""}`;
  };
  return {
    async step(title, work) {
      const spinner = ora({ stream: stream as NodeJS.WriteStream, discardStdin: false }).start(title);
      current = { title, started: performance.now(), spinner };
      detail = "";
      const timer = setInterval(render, 100);
      try {
        const result = await work();
        spinner.succeed(`${title} (${seconds(current.started)})`);
        return result;
      } catch (error) {
        spinner.fail(`${title} (${seconds(current.started)})`);
        throw error;
      } finally {
        clearInterval(timer);
        current = undefined;
      }
    },
    detail(line) {
      detail = line.trim();
    },
  };
}

export const quietProgress: ProgressReporter = { step: (_title, work) => work() };

export async function progressFor(
  stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number },
  options: { quiet?: boolean },
): Promise<ProgressReporter> {
  if (options.quiet) return quietProgress;
  return stream.isTTY ? terminalProgress(stream) : lineProgress(stream);
}
