/**
 * A raw reader that misbehaves on request (issue 17), for the reader-stall and fuzz suites. The
 * sender's local part says how: `stop-N@` reads N bytes then stops reading and never settles;
 * `hang-N@` reads everything and never settles; `throw-N@` throws after N bytes; `resolve-N@`
 * resolves after N bytes and reads no further; `pipe-N@` pipes into a writable that stops taking
 * data after N bytes and never settles. Any other sender: the reader reads to the end and accepts.
 * Plain JavaScript (a plugin definition object) so the CLI can load it by path, as users do.
 */
import { Writable } from 'node:stream';

const MODE = /^(stop|hang|throw|resolve|pipe)-(\d+)@/;

function reader(mode, limit) {
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
  setup: () => ({
    data(txn) {
      const m = MODE.exec(txn.mailFrom?.address ?? '');
      if (!m) return { raw: reader('normal', Infinity) };
      return { raw: reader(m[1], Number(m[2])) };
    },
  }),
};
