/** @module Worker entry of the feed actor; its logic is in lib/pipeline/feed_actor.ts. */
import { feedActor } from "../lib/pipeline/feed_actor.ts";
import { runUpbotActor } from "../lib/pipeline/runtime.ts";

runUpbotActor(feedActor());
