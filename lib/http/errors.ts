/**
 * @module Errors the HTTP layer answers on purpose (400, 401, 403, 404, 413) and the zod helpers
 * that turn a bad query or body into a 400 naming the field. Anything else is a 500 with a
 * generic message (see `app.ts`).
 */
import type { Context } from "hono";
import type { z } from "zod";

/** An error answered as `status` with a JSON `body` (never containing a secret). */
export class ApiError extends Error {
  readonly status: 400 | 401 | 403 | 404 | 413 | 503;
  readonly body: Record<string, unknown>;
  constructor(status: ApiError["status"], body: { error: string; [k: string]: unknown }) {
    super(body.error);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

/** The 400 for the first zod issue: `{"error":"invalid <where>","field":…,"message":…}`. */
function badInput(where: "query" | "body", error: z.ZodError): ApiError {
  const issue = error.issues[0];
  let field = issue && issue.path.length > 0 ? issue.path.join(".") : "(root)";
  if (issue?.code === "unrecognized_keys" && issue.keys.length > 0) {
    field = [...issue.path, issue.keys[0]].join(".");
  }
  return new ApiError(400, {
    error: `invalid ${where}`,
    field,
    message: issue?.message ?? "invalid",
  });
}

/**
 * Parses the query string with `schema` (an object schema over string values).
 *
 * @throws {ApiError} 400 naming the first bad field; unknown fields are bad too when `schema`
 *   is strict.
 */
export function parseQuery<S extends z.ZodType>(c: Context, schema: S): z.output<S> {
  const result = schema.safeParse(c.req.query());
  if (!result.success) throw badInput("query", result.error);
  return result.data;
}

/**
 * Parses a JSON body with `schema`; an empty body counts as `{}`.
 *
 * @throws {ApiError} 400 when the body is not JSON or a field is bad.
 */
export async function parseJsonBody<S extends z.ZodType>(
  c: Context,
  schema: S,
): Promise<z.output<S>> {
  const text = await c.req.text();
  let value: unknown = {};
  if (text.trim() !== "") {
    try {
      value = JSON.parse(text);
    } catch {
      throw new ApiError(400, { error: "invalid body", field: "(root)", message: "not JSON" });
    }
  }
  const result = schema.safeParse(value);
  if (!result.success) throw badInput("body", result.error);
  return result.data;
}
