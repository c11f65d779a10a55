import type { Readable } from 'node:stream';

/** What a chunk handler returns: nothing when it is done with the chunk, a promise while it waits (backpressure). */
export type TakeChunk = (chunk: Buffer) => void | Promise<void>;

/**
 * Reads `stream` to its end, handing every chunk to `take` in order; the next chunk is read only
 * once `take` is done with the one before (when it returned a promise, once that settled). Resolves
 * at the stream's end. Rejects with the stream's error, with `take`'s (a throw or a rejection), or
 * with a premature-close error when the stream closes before its end (a client that left mid-DATA).
 * An error or a close that comes while `take` is still busy is reported once `take` is done, so a
 * chunk is never abandoned halfway through its handler.
 *
 * This is what `for await (const chunk of stream)` does for the DATA loop, without its promises:
 * the async iterator made two to four promises a chunk and more per stream (about ten a message,
 * counted; packages/core/README.md, issue 22, part 9), where this makes one for the whole stream
 * and one per wait of `take`. Like the iterator, it reads with `stream.read()` (what is buffered,
 * at once) in paused mode.
 */
export function eachChunk(stream: Readable, take: TakeChunk): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let busy = false;
    let ended = false;
    let settled = false;
    let failure: unknown;
    const settle = (err?: unknown) => {
      if (settled) return;
      settled = true;
      // At its end a stream emits nothing more: its 'readable' listener is left to go with it, since
      // taking it off costs a tick (Node recomputes the stream's mode). Before its end it must go,
      // or the intake's resume() of a stream it no longer reads would have no effect.
      if (!stream.readableEnded) stream.off('readable', pump);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
      if (err !== undefined) reject(err);
      else resolve();
    };
    /** `take` is done with a chunk (or the stream said something while it was busy): go on, or finish. */
    const next = () => {
      busy = false;
      if (failure !== undefined) settle(failure);
      else if (ended) settle();
      else pump();
    };
    const onEnd = () => {
      ended = true;
      if (!busy) settle();
    };
    const onError = (err: unknown) => {
      failure ??= err ?? prematureClose();
      if (!busy) settle(failure);
    };
    const onClose = () => {
      if (!ended) failure ??= stream.errored ?? prematureClose();
      if (!busy) next();
    };
    function pump(): void {
      if (busy || settled) return;
      let chunk: Buffer | null;
      try {
        while ((chunk = stream.read() as Buffer | null) !== null) {
          const wait = take(chunk);
          if (wait) {
            busy = true;
            wait.then(next, (err: unknown) => {
              busy = false;
              settle(err);
            });
            return;
          }
          if (settled) return;
        }
      } catch (err) {
        settle(err);
      }
    }
    stream.on('readable', pump);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
    if (stream.errored) onError(stream.errored);
    else if (stream.readableEnded) onEnd();
    else if (stream.destroyed) onClose();
    else pump();
  });
}

function prematureClose(): Error {
  return Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}
