/**
 * A raw reader that misbehaves on request (issue 17), for the reader-stall and fuzz suites. The
 * sender's local part says how: `stop-N@` reads N bytes then stops reading and never settles;
 * `hang-N@` reads everything and never settles; `throw-N@` throws after N bytes; `resolve-N@`
 * resolves after N bytes and reads no further; `pipe-N@` pipes into a writable that stops taking
 * data after N bytes and never settles; `mime-0@` parses the message with the core's
 * `createMimeSplitter` (the relay's limits.mime) and lets its limit error reject; `msghang-0@`
 * reads to the end and accepts, but its `message` hook never settles. Any other sender: the
 * reader reads to the end and accepts.
 * Plain JavaScript (a plugin definition object) so the CLI can load it by path, as users do.
 */
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createMimeSplitter, Tokens } from '@portcullis/core';

const MODE = /^(stop|hang|throw|resolve|pipe|mime|msghang)-(\d+)@/;

function reader(mode, limit, limits) {
  if (mode === 'mime') {
    return async (stream) => {
      await pipeline(stream, createMimeSplitter(limits), new Writable({ objectMode: true, write: (_c, _e, cb) => cb() }));
      return undefined;
    };
  }
  return (stream) =>
    new Promise((resolve, reject) => {
      if (mode === 'pipe') {
        let got = 0;
        const sink = new Writable({
          highWaterMark: 1024,
          write(chunk, _enc, cb) {
            got += chunk.length;
            if (got < limit) cb(); // past the limit the callback is never called: a stuck consumer
          },
        });
        stream.pipe(sink);
        return;
      }
      let got = 0;
      const onData = (chunk) => {
        got += chunk.length;
        if (got < limit) return;
        if (mode === 'stop') {
          stream.off('data', onData);
          stream.pause();
        } else if (mode === 'throw') {
          stream.off('data', onData);
          stream.pause();
          reject(new Error(`stall-reader: thrown after ${got} bytes`));
        } else if (mode === 'resolve') {
          stream.off('data', onData);
          stream.pause();
          resolve(undefined);
        }
      };
      stream.on('data', onData);
      stream.on('end', () => {
        if (mode === 'hang' || mode === 'stop' || mode === 'pipe') return;
        resolve(undefined);
      });
    });
}

export default {
  kind: 'portcullis-plugin',
  name: 'stall-reader',
  setup: (_opts, ctx) => {
    const limits = ctx.container.resolve(Tokens.Config).limits;
    const modeOf = (txn) => MODE.exec(txn.mailFrom?.address ?? '');
    return {
      data(txn) {
        const m = modeOf(txn);
        if (!m || m[1] === 'msghang') return { raw: reader('normal', Infinity, limits) };
        return { raw: reader(m[1], Number(m[2]), limits) };
      },
      message(txn) {
        if (modeOf(txn)?.[1] === 'msghang') return new Promise(() => undefined);
        return undefined;
      },
    };
  },
};
