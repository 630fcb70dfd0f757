/** @module Worker entry of the executor actor; its logic is in lib/pipeline/executor_actor.ts. */
import { executorActor } from "../lib/pipeline/executor_actor.ts";
import { runUpbotActor } from "../lib/pipeline/runtime.ts";

runUpbotActor(executorActor());
