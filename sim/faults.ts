/**
 * @module Fault settings of the simulator: defaults, the zod schema of `POST /_sim/faults` and
 * `--faults`, and the live, mergeable store read on every request.
 */
import { z } from "zod";
import type { Faults } from "./mod.ts";

/** No faults. */
export const NO_FAULTS: Readonly<Faults> = Object.freeze({
  latency_ms: 0,
  error_rate: 0,
  server_error_after_create_rate: 0,
  server_error_burn_rate: 0,
  lost_response_rate: 0,
  create_delay_ms: 0,
  ws_disconnect_every_sec: 0,
  malformed_frame_rate: 0,
  rate_limit_factor: 1,
  offline_markets: [],
  remaining_req_group_names: "documented",
  private_ws_auth_refusal: "upgrade",
  private_ws_max_connections: 0,
});

const share = z.number().min(0).max(1);

/** A partial fault update: every field optional, unknown fields rejected. */
export const FaultsPatch = z.strictObject({
  latency_ms: z.number().int().min(0).max(600_000).optional(),
  error_rate: share.optional(),
  server_error_after_create_rate: share.optional(),
  server_error_burn_rate: share.optional(),
  lost_response_rate: share.optional(),
  create_delay_ms: z.number().int().min(0).max(600_000).optional(),
  ws_disconnect_every_sec: z.number().min(0).max(86_400).optional(),
  malformed_frame_rate: share.optional(),
  rate_limit_factor: z.number().positive().max(1_000).optional(),
  offline_markets: z.array(z.string().regex(/^[A-Z]{2,10}-[A-Z0-9]{1,15}$/)).optional(),
  remaining_req_group_names: z.enum(["documented", "alternative"]).optional(),
  private_ws_auth_refusal: z.enum(["upgrade", "in_band"]).optional(),
  private_ws_max_connections: z.number().int().min(0).max(1_000).optional(),
});

/** Validates a fault update; returns the patch or a readable error text. */
export function parseFaultsPatch(
  input: unknown,
): { ok: true; patch: Partial<Faults> } | { ok: false; error: string } {
  const result = FaultsPatch.safeParse(input);
  if (result.success) return { ok: true, patch: result.data };
  const error = result.error.issues
    .map((i) => `${i.path.join(".") || "faults"}: ${i.message}`)
    .join("; ");
  return { ok: false, error };
}

/** The fault settings in force, changed by merging partial updates. */
export class FaultStore {
  #faults: Faults;

  constructor(initial: Partial<Faults> = {}) {
    this.#faults = { ...NO_FAULTS, offline_markets: [] };
    this.merge(initial);
  }

  /** A copy of the settings in force. */
  get(): Faults {
    return { ...this.#faults, offline_markets: [...this.#faults.offline_markets] };
  }

  /** The live settings object (read-only by convention; cheap, for hot paths). */
  current(): Faults {
    return this.#faults;
  }

  /** Merges an update (fields not given keep their value). */
  merge(patch: Partial<Faults>): void {
    const next: Faults = { ...this.#faults };
    for (const [key, value] of Object.entries(patch)) {
      if (value !== undefined) (next as unknown as Record<string, unknown>)[key] = value;
    }
    next.offline_markets = [...next.offline_markets];
    this.#faults = next;
  }
}
