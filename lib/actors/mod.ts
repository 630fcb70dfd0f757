/**
 * @module The actor runtime, generic over the application's messages: the protocol builder, the
 * worker-side `runActor`, the supervisor, restart backoff and worker permissions. It imports only
 * the shared base modules; an application gives its messages and rules as parameters (upbot's are
 * in `lib/pipeline/runtime.ts`). See docs/actors.md.
 */
export * from "./protocol.ts";
export * from "./actor.ts";
export * from "./supervisor.ts";
export * from "./backoff.ts";
export * from "./permissions.ts";
