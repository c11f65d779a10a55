import type { ControlRequest, ControlResponse } from '../ops/control-server.js';

/** One queue (a worker's, an adopted shard's, or a spool opened offline) answering control requests. */
export interface QueueTarget {
  /** The shard it serves, written on each `list` entry that does not name one yet. */
  readonly shard?: number;
  answer(req: ControlRequest): Promise<ControlResponse>;
}

/**
 * Asks every queue and merges the answers as if they came from one queue: the primary does this
 * over its workers, a worker over its own shard and the shards it adopted, `portcullis queue` with
 * the relay stopped over every shard's spool. A message id lives in exactly one shard (ids carry
 * a random part and a shard lock guards each), so a per-message command is answered by the one
 * queue that has it; `list` is the union, `flush` the sum.
 */
export async function fanOut(req: ControlRequest, targets: readonly QueueTarget[]): Promise<ControlResponse> {
  const answers = await Promise.all(targets.map((t) => t.answer(req).catch((err: unknown): ControlResponse => ({ ok: false, error: (err as Error).message }))));
  switch (req.cmd) {
    case 'list': {
      const failed = answers.find((a) => !a.ok);
      // A queue that did not answer would make the list silently short: say so instead.
      if (failed && !failed.ok) return { ok: false, error: `not every worker answered: ${failed.error}` };
      const rows = answers.flatMap((a, i) => ((a as { result: Array<Record<string, unknown>> }).result ?? []).map((e) => ('shard' in e || targets[i]!.shard === undefined ? e : { ...e, shard: targets[i]!.shard })));
      return { ok: true, result: rows };
    }
    case 'flush': {
      if (req.id) return firstFound(answers, (a) => ((a as { result: { flushed: number } }).result.flushed ?? 0) > 0);
      const failed = answers.find((a) => !a.ok);
      if (failed && !failed.ok) return failed;
      return { ok: true, result: { flushed: answers.reduce((n, a) => n + ((a as { result: { flushed: number } }).result.flushed ?? 0), 0) } };
    }
    default:
      return firstFound(answers, () => true);
  }
}

/** The answer of the queue that had the message; else the first refusal (every queue said no). */
function firstFound(answers: readonly ControlResponse[], found: (a: ControlResponse) => boolean): ControlResponse {
  return answers.find((a) => a.ok && found(a)) ?? answers.find((a) => a.ok) ?? answers[0] ?? { ok: false, error: 'no queue to ask' };
}
