/**
 * @module Worker that creates a new PGlite data directory (PGlite runs `initdb` on first open) and
 * ends. `initdb` leaves a few hundred MB of WebAssembly memory behind that its isolate never
 * returns; run here, that memory goes when the Worker is terminated, before upbot opens the
 * directory in its main thread (lib/db/embedded_db.ts). Sent: `{ dataDir, startParams }`; answers
 * `{ ok: true }` or `{ ok: false, error }`.
 */
import { PGlite } from "@electric-sql/pglite";

/** What the Worker is asked to do. */
export interface InitdbRequest {
  dataDir: string;
  startParams: string[];
}

/** Its answer. */
export type InitdbReply = { ok: true } | { ok: false; error: string };

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<InitdbRequest>) => void) | null;
  postMessage(message: InitdbReply): void;
};

scope.onmessage = async (event) => {
  try {
    const db = await PGlite.create({
      dataDir: event.data.dataDir,
      startParams: event.data.startParams,
    });
    await db.close();
    scope.postMessage({ ok: true });
  } catch (err) {
    scope.postMessage({ ok: false, error: err instanceof Error ? err.message : String(err) });
  }
};
