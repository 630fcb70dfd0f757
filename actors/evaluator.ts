/** @module Worker entry of the evaluator actor; its logic is in lib/pipeline/evaluator_actor.ts. */
import { evaluatorActor } from "../lib/pipeline/evaluator_actor.ts";
import { runUpbotActor } from "../lib/pipeline/runtime.ts";

runUpbotActor(evaluatorActor());
