/**
 * @module A sweep worker thread: receives the run and the bars once, then replays one grid point
 * per message and answers with its result (see `sweep.ts`).
 */
import type { Bar } from "../strategy/bars.ts";
import type { RunParameters } from "./report.ts";
import { barsFromColumns, evaluatePoint, type SweepRequest, type SweepResponse } from "./sweep.ts";

let state: { run: RunParameters; windows: number; bars: Map<string, Bar[]> } | null = null;
// Points arrive in order; each waits for the previous one.
let queue: Promise<void> = Promise.resolve();

/** The parts of the worker global scope used here. */
interface WorkerScope {
  onmessage: ((event: MessageEvent<SweepRequest>) => void) | null;
  postMessage(message: SweepResponse): void;
}
const scope = globalThis as unknown as WorkerScope;
const post = (message: SweepResponse) => scope.postMessage(message);

scope.onmessage = (e: MessageEvent<SweepRequest>) => {
  const msg = e.data;
  if (msg.type === "init") {
    state = { run: msg.run, windows: msg.windows, bars: barsFromColumns(msg.markets) };
    return;
  }
  queue = queue.then(async () => {
    try {
      if (!state) throw new Error("sweep worker got a point before its bars");
      const point = await evaluatePoint(
        state.run,
        msg.index,
        msg.settings,
        state.bars,
        state.windows,
      );
      post({ type: "point", point });
    } catch (err) {
      post({ type: "error", message: (err as Error).message });
    }
  });
};
