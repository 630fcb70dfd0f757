/** @module Worker entry of the account actor; its logic is in lib/pipeline/account_actor.ts. */
import { accountActor } from "../lib/pipeline/account_actor.ts";
import { runUpbotActor } from "../lib/pipeline/runtime.ts";

runUpbotActor(accountActor());
