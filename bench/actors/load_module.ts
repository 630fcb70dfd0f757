/**
 * @module A Worker for the isolate probe (bench/isolate_memory.ts): imports the module named in
 * the first message (an actor module is only loaded, never started: `runActor` installs its
 * handler and waits for a start message that never comes), then answers with its isolate's
 * `Deno.memoryUsage()` after a full garbage collection when `gc` is exposed.
 */
self.onmessage = async (event: MessageEvent<string>) => {
  const t0 = performance.now();
  if (event.data !== "") await import(event.data);
  const loadMs = performance.now() - t0;
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  self.postMessage({ ...Deno.memoryUsage(), loadMs });
};
