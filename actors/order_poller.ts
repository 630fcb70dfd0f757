/** @module Worker entry of the order_poller actor; its logic is in lib/pipeline/order_poller_actor.ts. */
import { orderPollerActor } from "../lib/pipeline/order_poller_actor.ts";
import { runUpbotActor } from "../lib/pipeline/runtime.ts";

runUpbotActor(orderPollerActor());
