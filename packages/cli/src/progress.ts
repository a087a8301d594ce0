/**
 * Progress for slow work, always on stderr so stdout carries only results. On a terminal each
 * step is a spinner with its elapsed time and, for builds and pushes, the engine's current step and
 * transfer progress; elsewhere each step is a plain line when it starts and when it ends, with the
 * engine's steps (and now and then its transfer progress) as indented lines in between.
 */
import { type EngineOutputEvent, engineOutputReader } from "@claude-bottle/container-engine";
import type { ProgressReporter } from "@claude-bottle/core";

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

const seconds = (since: number) => `${((performance.now() - since) / 1000).toFixed(1)}s`;

/** At most one transfer line this often without a terminal: a log, not a stream of counters. */
const transferLineEveryMs = 2000;

const clip = (text: string, width: number) => (text.length > width ? `${text.slice(0, width - 1)}…` : text);

/**
 * Plain lines: `claude-bottle: build agent image…`, the engine's steps (`claude-bottle:   [5/9] RUN
 * npm install …`), then `claude-bottle: build agent image: done in 12.3s`.
 */
export function lineProgress(stream: ProgressStream): ProgressReporter {
  let read = engineOutputReader();
  let transfer = { shown: "", latest: "", at: Number.NEGATIVE_INFINITY };
  const showTransfer = () => {
    if (transfer.latest === transfer.shown) return;
    stream.write(`claude-bottle:   ${transfer.latest}\n`);
    transfer = { shown: transfer.latest, latest: transfer.latest, at: performance.now() };
  };
  return {
    async step(title, work) {
      const started = performance.now();
      read = engineOutputReader();
      transfer = { shown: "", latest: "", at: Number.NEGATIVE_INFINITY };
      stream.write(`claude-bottle: ${title}…\n`);
      try {
        const result = await work();
        showTransfer();
        stream.write(`claude-bottle: ${title}: done in ${seconds(started)}\n`);
        return result;
      } catch (error) {
        stream.write(`claude-bottle: ${title}: failed after ${seconds(started)}\n`);
        throw error;
      }
    },
    detail(line) {
      const event = read(line);
      if (event?.kind === "step") {
        showTransfer();
        stream.write(`claude-bottle:   ${clip(event.text, 160)}\n`);
        transfer = { shown: "", latest: "", at: Number.NEGATIVE_INFINITY };
      } else if (event?.kind === "transfer") {
        transfer.latest = event.text;
        if (performance.now() - transfer.at >= transferLineEveryMs) showTransfer();
      }
    },
  };
}

/** A spinner per step with live elapsed time, the engine's current step and its latest progress. */
export async function terminalProgress(
  stream: NodeJS.WritableStream & { columns?: number },
): Promise<ProgressReporter> {
  const { default: ora } = await import("ora");
  let current: { title: string; started: number; spinner: ReturnType<typeof ora> } | undefined;
  let read = engineOutputReader();
  // The engine's current step, and the latest transfer progress or output line within it.
  let state: { step: string; within: string } = { step: "", within: "" };
  const render = () => {
    if (!current) return;
    const width = Math.max(20, (stream.columns ?? 80) - current.title.length - 16);
    // The step first, the transfer or output line after it in what room is left.
    const step = state.within ? clip(state.step, Math.max(20, Math.floor(width * 0.6))) : state.step;
    const detail = [step, state.within].filter(Boolean).join(" · ");
    current.spinner.text = `${current.title} (${seconds(current.started)})${detail ? `  ${clip(detail, width)}` : ""}`;
  };
  const apply = (event: EngineOutputEvent) => {
    if (event.kind === "step") state = { step: event.text, within: "" };
    else state.within = event.text;
  };
  return {
    async step(title, work) {
      const spinner = ora({ stream: stream as NodeJS.WriteStream, discardStdin: false }).start(title);
      current = { title, started: performance.now(), spinner };
      read = engineOutputReader();
      state = { step: "", within: "" };
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
      const event = read(line);
      if (event) apply(event);
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

/** A reporter whose steps run at once but show only once the caller says so (see heldProgress). */
export interface HeldProgress extends ProgressReporter {
  /** Show the steps from now on, each with the output it gave while held. */
  show(): void;
  /** Show nothing: the held work is being stopped (see run). */
  drop(): void;
}

/**
 * Progress for work that starts before it may be shown: `run` builds the image while it still sets
 * up the bottle, and what that setup says (warnings, or the error that stops the build) must come
 * first and alone. Each step's work starts when the step does; the step appears on the reporter
 * `open` resolves with only after `show()`, replaying the engine output it gave in the meantime,
 * and never after `drop()`.
 */
export function heldProgress(open: () => Promise<ProgressReporter>): HeldProgress {
  let decide: (show: boolean) => void = () => {};
  const reporter = new Promise<boolean>((resolve) => {
    decide = resolve;
  }).then((show) => (show ? open() : undefined));
  let shown: ProgressReporter | undefined;
  let held: string[] = [];
  return {
    async step(title, work) {
      const running = work();
      // It may fail before anyone awaits it; the failure is what the step reports (or throws) below.
      running.catch(() => {});
      const target = await reporter;
      if (!target) return running;
      return target.step(title, () => {
        shown = target;
        for (const line of held) target.detail?.(line);
        held = [];
        return running;
      });
    },
    detail(line) {
      if (shown) shown.detail?.(line);
      else held.push(line);
    },
    show: () => decide(true),
    drop: () => decide(false),
  };
}
