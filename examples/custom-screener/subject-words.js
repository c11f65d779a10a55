// @ts-check
// A screener of your own, loaded by path (`use: ./subject-words.js`): refuses a message whose
// Subject, or with `body: true` whose text, contains one of the configured words.
import { StringDecoder } from 'node:string_decoder';
import { definePlugin, reject, z } from '@portcullis/core';

/** Decodes RFC 2047 encoded words (`=?UTF-8?B?...?=`), so an encoded Subject cannot hide a word. */
const qp = (/** @type {string} */ t) => Buffer.from(t.replace(/_/g, ' ').replace(/=([0-9a-f]{2})/gi, (_, /** @type {string} */ h) => String.fromCharCode(parseInt(h, 16))), 'latin1');
const decodeWords = (/** @type {string} */ s) =>
  s.replace(/(\?=)\s+(?==\?)/g, '$1').replace(/=\?([^?]+)\?([bq])\?([^?]*)\?=/gi, (all, charset, enc, text) => {
    try { return new TextDecoder(charset).decode(enc.toLowerCase() === 'b' ? Buffer.from(text, 'base64') : qp(text)); } catch { return all; } // unknown charset: as is
  });

export default definePlugin({
  name: 'subject-words',
  options: z.strictObject({
    /** Whole words, matched in any case. */
    words: z.array(z.string().regex(/^[\p{L}\p{N}'-]+$/u, 'expected one word (letters, digits, - or \')')).min(1),
    /** Also look in the decoded text of text/* parts (base64 and quoted-printable included). */
    body: z.boolean().default(false),
  }),
  setup(opts) {
    // The schema lets through letters, digits, - and ' only: nothing a regex treats as special.
    const word = new RegExp(`(?<![\\p{L}\\p{N}])(?:${opts.words.join('|')})(?![\\p{L}\\p{N}])`, 'iu');
    /** @param {import('@portcullis/core').Transaction} txn @param {string} where @param {string} text */
    const note = (txn, where, text) => {
      const m = word.exec(text);
      if (m) txn.notes['subject-words'] ??= { where, word: m[0] };
    };
    return {
      // DATA: say how to see the message. Both handlers only take notes; `message` decides.
      data: (txn) => ({
        async raw(stream) { // the raw bytes: read the header section, and the stream to its end
          let head = '';
          for await (const chunk of stream) if (!head.includes('\r\n\r\n') && head.length < 1 << 20) head += chunk.toString('latin1');
          const subject = /^subject:(.*(?:\r\n[ \t].*)*)/im.exec(head.split('\r\n\r\n')[0] ?? '')?.[1] ?? '';
          note(txn, 'Subject', decodeWords(subject.replace(/\r\n/g, '')));
        },
        part(part) { // each leaf MIME part, its content decoded; undefined = not interested
          if (!opts.body || !part.contentType.startsWith('text/')) return undefined;
          const utf8 = new StringDecoder('utf8');
          let tail = ''; // the end of the previous chunk, for a word cut in two
          return {
            update(chunk) { const text = tail + utf8.write(chunk); note(txn, 'text', text); tail = text.slice(-64); },
            done() { note(txn, 'text', tail + utf8.end()); return undefined; }, // undefined = keep the part
          };
        },
      }),
      // End of DATA, every handler finished: reject (5xx), tempfail (4xx) or undefined (go on).
      message(txn) {
        const hit = /** @type {{ where: string, word: string } | undefined} */ (txn.notes['subject-words']);
        return hit ? reject(550, '5.7.1', `Message refused: its ${hit.where} contains "${hit.word}"`) : undefined;
      },
    };
  },
});
