import type { Reply } from '@portcullis/core';
import { ProtocolError } from './protocol.js';

/**
 * A custom reply (SMFIR_REPLYCODE), checked as Postfix checks it: a 4xx or 5xx code, an optional
 * enhanced status of the same class, printable text; several lines (`550-...` then `550 ...`) must
 * repeat the code. Anything else is a protocol error (the milter's default action applies).
 */
export function parseReplyCode(text: string): Reply {
  const lines = text.replace(/\r?\n$/, '').split(/\r?\n/);
  let code = 0;
  let enhanced = '';
  const texts: string[] = [];
  lines.forEach((line, i) => {
    const m = /^([45]\d\d)([ -]|$)(?:([245]\.\d{1,3}\.\d{1,3})(?: |$))?(.*)$/.exec(line);
    if (!m) throw new ProtocolError(`invalid SMFIR_REPLYCODE ${JSON.stringify(text.slice(0, 100))}`);
    const c = Number(m[1]);
    if (i === 0) code = c;
    else if (c !== code) throw new ProtocolError('SMFIR_REPLYCODE lines with different codes');
    const last = i === lines.length - 1;
    if ((m[2] === '-') === last && lines.length > 1) throw new ProtocolError('SMFIR_REPLYCODE continuation marks out of place');
    if (m[3]) {
      if (m[3][0] !== String(code)[0]) throw new ProtocolError(`SMFIR_REPLYCODE enhanced status ${m[3]} does not match ${code}`);
      enhanced ||= m[3];
    }
    if (/[\x00-\x1f\x7f]/.test(m[4]!)) throw new ProtocolError('SMFIR_REPLYCODE text with control characters');
    texts.push(m[4]!.trim());
  });
  // Sendmail's convention: `%%` in a reply stands for one `%`.
  return { code, enhanced: enhanced || `${String(code)[0]}.7.1`, text: texts.filter(Boolean).join(' ').replace(/%%/g, '%') || (code >= 500 ? 'Command rejected' : 'Service unavailable - try again later') };
}

/** Postfix's replies for a plain reject / tempfail from a milter. */
export const MilterReplies = {
  reject: { code: 550, enhanced: '5.7.1', text: 'Command rejected' },
  rejectMessage: { code: 550, enhanced: '5.7.1', text: 'Message content rejected' },
  tempfail: { code: 451, enhanced: '4.7.1', text: 'Service unavailable - try again later' },
  /** milter_default_action: reject, when a milter fails. */
  failedReject: { code: 550, enhanced: '5.7.1', text: 'Service unavailable' },
} as const satisfies Record<string, Reply>;
