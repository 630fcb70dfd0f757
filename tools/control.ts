/**
 * @module `deno task halt | resume | flatten | lost-order | conflict-order`: halt new entries,
 * resume them, flatten every position, give the uuid of a lost order, or say whether the order
 * found under a conflict sell's identifier is that sell, on the running upbot.
 *
 * ```sh
 * deno task halt --reason "exchange maintenance" [--market KRW-BTC]
 * deno task resume [--market KRW-BTC]
 * deno task flatten --reason "leaving for a week"
 * deno task lost-order --identifier paper-abcd2345-17-EXIT_LONG --uuid 9ca023a5-851b-4fec-9f0a-48cd83c2eaae
 * deno task conflict-order --identifier paper-abcd2345-17-EXIT_LONG --ours
 * deno task conflict-order --identifier paper-abcd2345-17-EXIT_LONG --not-ours
 * ```
 *
 * `lost-order` names an order upbot gave up as lost (the `order_lost` alarm's identifier) and the
 * uuid a person saw for it on Upbit's site: upbot asks Upbit for that uuid and adopts the order
 * only if it is the order it asked for (`lib/control/lost_order_hint.ts`).
 *
 * `conflict-order` names a live sell in conflict (the `identifier_conflict` alarm's identifier),
 * which holds its market's sells, and what a person found at Upbit: `--ours` (the order under
 * the identifier is that sell: upbot adopts its fills once final) or `--not-ours` (it is not; the
 * sell never executed: the closer sells the position again) (`lib/control/conflict_verdict.ts`).
 *
 * The command goes through the control directory `DATA_DIR/control/` (see
 * `lib/control/command_dir.ts`), never the database: the embedded database cannot be opened by a
 * second process. The tool waits up to {@linkcode ACK_TIMEOUT_MS} for the running upbot's
 * acknowledgement and prints the trading state it reports. Without one, the command stays queued
 * and is applied when upbot next starts.
 *
 * Permissions: `--allow-read --allow-write --allow-env`.
 * Exit codes: 0 applied, 1 refused or not acknowledged in time (queued), 2 bad usage or config.
 */
import { parseArgs } from "node:util";
import { loadConfigOrReport, setUpLogging } from "../lib/cli.ts";
import {
  type ControlDirLayout,
  controlDirLayout,
  enqueueControlCommand,
  waitForControlAck,
} from "../lib/control/command_dir.ts";
import {
  type ControlAck,
  type ControlRequest,
  newControlCommand,
} from "../lib/control/commands.ts";
import { ORDER_UUID, UPBOT_IDENTIFIER } from "../lib/control/lost_order_hint.ts";
import { assertTradingScope, GLOBAL_SCOPE } from "../lib/control/trading_state.ts";
import { createLogger } from "../lib/log.ts";

/** How long the tool waits for a running upbot to acknowledge (it polls every 250 ms). */
export const ACK_TIMEOUT_MS = 5_000;

const log = createLogger("control");

const USAGE = [
  'usage: deno task halt --reason "why" [--market KRW-BTC]',
  "       deno task resume [--market KRW-BTC]",
  '       deno task flatten --reason "why"',
  "       deno task lost-order --identifier <identifier of the order_lost alarm> --uuid <uuid seen on Upbit>",
  "       deno task conflict-order --identifier <identifier of the identifier_conflict alarm> --ours|--not-ours",
].join("\n");

/** Thrown for bad arguments; the message is the sentence to show. */
class UsageError extends Error {}

/** Turns the command line into a request. */
export function parseControlArgs(args: readonly string[]): ControlRequest {
  const [action, ...rest] = args;
  let parsed;
  try {
    parsed = parseArgs({
      args: [...rest],
      options: {
        reason: { type: "string" },
        market: { type: "string" },
        identifier: { type: "string" },
        uuid: { type: "string" },
        ours: { type: "boolean" },
        "not-ours": { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { reason, market, identifier, uuid, ours, "not-ours": notOurs } = parsed.values;
  if (
    action !== "lost-order" && action !== "conflict-order" &&
    (identifier !== undefined || uuid !== undefined)
  ) {
    throw new UsageError(`${action} takes no --identifier or --uuid`);
  }
  if (action !== "conflict-order" && (ours !== undefined || notOurs !== undefined)) {
    throw new UsageError(`${action} takes no --ours or --not-ours`);
  }
  const scope = market === undefined ? GLOBAL_SCOPE : market.trim().toUpperCase();
  if (market !== undefined) {
    if (scope === GLOBAL_SCOPE.toUpperCase()) throw new UsageError("--market needs a market code");
    try {
      assertTradingScope(scope);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const needReason = () => {
    if (reason === undefined || reason.trim() === "") {
      throw new UsageError(`${action} needs --reason "why" (it is stored with who and when)`);
    }
    return reason.trim();
  };
  switch (action) {
    case "halt":
      return { action, scope, reason: needReason() };
    case "resume":
      if (reason !== undefined) throw new UsageError("resume takes no --reason");
      return { action, scope };
    case "flatten":
      if (market !== undefined) {
        throw new UsageError("flatten closes every position: it takes no --market");
      }
      return { action, reason: needReason() };
    case "lost-order":
      return lostOrderRequest(identifier, uuid, reason, market);
    case "conflict-order":
      if (reason !== undefined || market !== undefined || uuid !== undefined) {
        throw new UsageError("conflict-order takes only --identifier and --ours or --not-ours");
      }
      if (ours === notOurs) {
        throw new UsageError(
          "conflict-order needs exactly one of --ours (the order found at Upbit is upbot's sell) or --not-ours (it is not; the sell never executed)",
        );
      }
      return {
        action,
        identifier: upbotIdentifier(action, "identifier_conflict", identifier),
        verdict: ours ? "ours" : "not-ours",
      };
    default:
      throw new UsageError(`unknown control command ${JSON.stringify(action ?? "")}`);
  }
}

/** The `lost-order` request, its identifier and uuid checked (a uuid pasted in capitals is fine). */
function lostOrderRequest(
  identifier: string | undefined,
  uuid: string | undefined,
  reason: string | undefined,
  market: string | undefined,
): ControlRequest {
  if (reason !== undefined || market !== undefined) {
    throw new UsageError("lost-order takes only --identifier and --uuid");
  }
  const id = upbotIdentifier("lost-order", "order_lost", identifier);
  const order = uuid?.trim().toLowerCase() ?? "";
  if (!ORDER_UUID.test(order)) {
    throw new UsageError(
      `lost-order needs --uuid with the order's uuid as Upbit shows it, such as 9ca023a5-851b-4fec-9f0a-48cd83c2eaae (got ${
        JSON.stringify(uuid ?? "")
      })`,
    );
  }
  return { action: "lost-order", identifier: id, uuid: order };
}

/** `identifier` trimmed, if it is one upbot makes; `action` and `alarm` name it in the refusal. */
function upbotIdentifier(action: string, alarm: string, identifier: string | undefined): string {
  const id = identifier?.trim() ?? "";
  if (!UPBOT_IDENTIFIER.test(id) || id.length > 64) {
    throw new UsageError(
      `${action} needs --identifier with the identifier of the ${alarm} alarm, such as paper-abcd2345-17-EXIT_LONG (got ${
        JSON.stringify(identifier ?? "")
      })`,
    );
  }
  return id;
}

/**
 * Writes `request` into the control directory and waits up to `timeoutMs` for the running upbot's
 * acknowledgement: the acknowledgement, or null (the command then stays queued at `path`).
 */
export async function sendControlRequest(
  layout: ControlDirLayout,
  request: ControlRequest,
  timeoutMs = ACK_TIMEOUT_MS,
): Promise<{ ack: ControlAck | null; path: string }> {
  const command = newControlCommand(request);
  const path = await enqueueControlCommand(layout, command);
  return { ack: await waitForControlAck(layout, command.id, { timeoutMs }), path };
}

function describeState(s: ControlAck["states"][number]): string {
  return s.halted
    ? `${s.scope}: entries HALTED since ${s.since} by ${s.by}: ${s.reason}`
    : `${s.scope}: entries allowed (resumed ${s.since} by ${s.by})`;
}

async function main(args: string[]): Promise<number> {
  let request: ControlRequest;
  try {
    request = parseControlArgs(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    log.error(`${err.message}\n${USAGE}`);
    return 2;
  }
  const config = loadConfigOrReport();
  if (!config) return 2;
  setUpLogging(config);
  if ("scope" in request && request.scope !== GLOBAL_SCOPE) {
    if (!config.MARKETS.includes(request.scope)) {
      log.warn(`${request.scope} is not one of MARKETS here (${config.MARKETS.join(",")})`);
    }
  }
  const layout = controlDirLayout(config.DATA_DIR);
  const { ack, path } = await sendControlRequest(layout, request);
  if (ack === null) {
    log.error(
      `no running upbot acknowledged the ${request.action} within ${
        ACK_TIMEOUT_MS / 1000
      } s (is upbot running with DATA_DIR=${config.DATA_DIR}?); the command stays queued in ${path} and is applied when upbot next starts (delete that file to cancel it)`,
    );
    return 1;
  }
  if (!ack.ok) {
    log.error(`upbot refused the command: ${ack.message}`);
    return 1;
  }
  log.info(ack.message, ack.flatten_id === null ? {} : { flatten_id: ack.flatten_id });
  // A lost-order or conflict-order changes no halt: the trading state is not what was asked about.
  if (request.action === "lost-order" || request.action === "conflict-order") return 0;
  for (const state of ack.states) log.info(describeState(state));
  if (ack.states.length === 0) log.info("no halts are stored: entries are allowed everywhere");
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
