/**
 * @module `actor_state`: small durable JSON state per actor (cursors, model snapshots), so a
 * restarted actor resumes exactly where it stopped.
 */
import type { Sql } from "../db/connect.ts";

/** Reads the state stored under `name`, or `null`. */
export async function loadActorState<T>(sql: Sql, name: string): Promise<T | null> {
  const [row] = await sql<{ state: T }[]>`select state from actor_state where name = ${name}`;
  return row ? row.state : null;
}

/** Stores `state` under `name` (replacing what was there). */
export async function saveActorState(sql: Sql, name: string, state: unknown): Promise<void> {
  await sql`
    insert into actor_state (name, state) values (${name}, ${sql.json(state as never)})
    on conflict (name) do update set state = excluded.state, updated_at = now()`;
}
