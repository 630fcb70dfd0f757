/**
 * @module Client order ids, unique forever: `paper-{installation}-{paper_trade_id}-{action}` for a
 * paper trade's order, `paper-{installation}-close-{n}` for a close decided from the ledger, with
 * `-r{n}` appended only when Upbit refused an identifier as used while no order exists under it.
 * `paper-{installation}-` is this installation's prefix (the id is made by migration 002).
 */

/** Upbit allows client order ids of at most 64 characters (§4.3). */
export const MAX_IDENTIFIER_LENGTH = 64;

/**
 * `paper-{inst}-{id}-{action}` (`-r{seq}` for a fresh identifier): the client order id of a paper
 * trade's order.
 *
 * @throws {Error} when it would be longer than {@linkcode MAX_IDENTIFIER_LENGTH}.
 */
export function identifierFor(
  installation: string,
  paperTradeId: number,
  action: string,
  seq = 0,
): string {
  return checkLength(
    `paper-${installation}-${paperTradeId}-${action}${seq > 0 ? `-r${seq}` : ""}`,
  );
}

/** `paper-{inst}-close-{n}` (`-r{seq}`): the client order id of a close decided from the ledger. */
export function closeIdentifierFor(installation: string, n: number, seq = 0): string {
  return checkLength(`paper-${installation}-close-${n}${seq > 0 ? `-r${seq}` : ""}`);
}

function checkLength(identifier: string): string {
  if (identifier.length > MAX_IDENTIFIER_LENGTH) {
    throw new Error(
      `identifier ${identifier} is longer than ${MAX_IDENTIFIER_LENGTH} characters`,
    );
  }
  return identifier;
}

/** Fresh identifier number `seq` of an attempt whose identifier is `current` (`-r{seq}`). */
export function rotatedIdentifier(current: string, seq: number): string {
  return checkLength(`${current.replace(/-r\d+$/, "")}-r${seq}`);
}
