/**
 * Counts the work objects a Node process makes, for `work-count.ts`: async resources by type
 * (promises, tick callbacks, timers, immediates, socket and file requests: `async_hooks`' init) and
 * EventEmitters by class (streams, sockets, servers: through `EventEmitter.init`, which every
 * emitter's constructor calls). Loaded with `node --import <this file>`; on SIGUSR2 it writes the
 * totals so far, as JSON, to the file named by PORTCULLIS_COUNT_FILE (replaced whole).
 *
 * Counts, not time: the same messages give the same counts, however busy the machine (the driver
 * takes the difference of two dumps around the measured messages). With promise hooks on, V8 makes
 * some promises it otherwise skips (an `await`'s throwaway promise), so the promise count is an
 * upper bound of what runs without the hook; compare relays counted the same way.
 */
import { createHook } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { writeFileSync } from 'node:fs';

const out = process.env['PORTCULLIS_COUNT_FILE'];
if (out) {
  const types = new Map<string, number>();
  const emitters = new Map<string, number>();
  createHook({
    init(_id, type) {
      types.set(type, (types.get(type) ?? 0) + 1);
    },
  }).enable();
  const holder = EventEmitter as unknown as { init: (this: object, ...args: unknown[]) => void };
  const init = holder.init;
  holder.init = function countedInit(this: object, ...args: unknown[]) {
    const name = (this as { constructor?: { name?: string } }).constructor?.name || '?';
    emitters.set(name, (emitters.get(name) ?? 0) + 1);
    return init.apply(this, args);
  };
  process.on('SIGUSR2', () => {
    writeFileSync(out, JSON.stringify({ at: Date.now(), types: Object.fromEntries(types), emitters: Object.fromEntries(emitters) }));
  });
}
