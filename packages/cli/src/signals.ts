/**
 * Ctrl-C and SIGTERM during slow or long work: abort the work's signal so the backend tears the
 * bottle down (nothing left running), then exit 128+N like a process killed by that signal.
 */
import { BottleError } from "@claude-bottle/core/errors";

const signalNumbers = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const;
type HandledSignal = keyof typeof signalNumbers;

export async function withSignalAbort(work: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const controller = new AbortController();
  let received: HandledSignal | undefined;
  const handlers = new Map<HandledSignal, () => void>();
  for (const name of Object.keys(signalNumbers) as HandledSignal[]) {
    const handler = () => {
      if (received) return; // already cleaning up; a second Ctrl-C must not skip the cleanup
      received = name;
      controller.abort(new BottleError("ABORTED", `interrupted by ${name}`));
    };
    handlers.set(name, handler);
    process.on(name, handler);
  }
  try {
    return await work(controller.signal);
  } catch (error) {
    if (received && (controller.signal.aborted || (BottleError.is(error) && error.code === "ABORTED"))) {
      return 128 + signalNumbers[received];
    }
    throw error;
  } finally {
    for (const [name, handler] of handlers) process.off(name, handler);
  }
}
