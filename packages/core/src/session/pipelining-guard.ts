import { canTapCommands, hasPendingInput, type CommandTap, type Conn, type ParserWriteTap } from '../adapter/smtp-server.js';
import { Replies } from '../api/verdicts.js';

/**
 * Improper pipelining after DATA (RFC 2920 section 3.1: DATA must be the last command of a group;
 * the client waits for 354 before it sends the message). A client that sends message content
 * before our 354 is a spam engine that does not read replies, or an attempt to smuggle content past
 * a reply it never saw. Like Postfix's `reject_unauth_pipelining`, the DATA command is answered
 * `554 5.5.0` and the connection closed (the content, read as commands, must not run).
 *
 * "Sent before our 354" means: already received when the DATA command is dispatched. That is
 *   - bytes after the DATA line in the same received chunk (the parser's write in progress: seen by
 *     this guard's parser-write tap);
 *   - chunks queued behind it in the parser's writable buffer, or in the socket's readable buffer
 *     (the adapter's `hasPendingInput`).
 * DATA is dispatched one event-loop turn late (setImmediate), so bytes that were already waiting in
 * the kernel are read into those buffers first. The 354 goes out in the same turn as the check.
 *
 * smtp-server has no hook for this: command dispatch, the parser's input and its state are reached
 * through the adapter's taps and functions (adapter/smtp-server.ts, where the wrapped methods and the
 * fields read are pinned); with another library version the guard is not installed and the relay
 * logs a warning.
 */

/** True when the adapter can tap command dispatch in the installed smtp-server. */
export function canGuardPipelining(): boolean {
  return canTapCommands();
}

const DATA_LINE = /(?:^|\n)DATA[ \t]*\r?\n/i;

/** The guard's taps for one connection: installed by the adapter's single wrappers (installConnectionTaps). */
export function pipeliningTaps(conn: Conn, onRefused?: () => void): { command: CommandTap; parserWrite: ParserWriteTap } {
  /** Bytes that followed a DATA line in the chunk that carried it. */
  let afterData = 0;
  const parserWrite: ParserWriteTap = (chunk, parser) => {
    if (!parser.dataMode && chunk && chunk.length) {
      // Only the first DATA line of the chunk matters: it switches the parser to data mode.
      const text = parser.remainder + chunk.toString('latin1');
      const m = DATA_LINE.exec(text);
      if (m) afterData = text.length - (m.index + m[0].length);
    }
  };
  const command: CommandTap = (cmd, callback, next) => {
    if (!/^DATA[ \t]*$/i.test(cmd.toString('latin1'))) return next(cmd, callback);
    setImmediate(() => {
      const early = afterData > 0 || hasPendingInput(conn);
      afterData = 0;
      if (!early) return next(cmd, callback);
      onRefused?.();
      conn.send(Replies.improperPipelining.code, `${Replies.improperPipelining.enhanced} ${Replies.improperPipelining.text}`);
      conn.close();
      callback?.();
    });
  };
  return { command, parserWrite };
}
