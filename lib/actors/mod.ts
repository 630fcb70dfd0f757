/**
 * @module The actor runtime: the message protocol, the worker-side `runActor`, the supervisor,
 * restart backoff and worker permissions. See docs/actors.md.
 */
export * from "./messages.ts";
export * from "./actor.ts";
export * from "./supervisor.ts";
export * from "./backoff.ts";
export * from "./permissions.ts";
