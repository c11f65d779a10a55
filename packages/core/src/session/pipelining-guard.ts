import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { sourceHash } from '../adapter/source-hash.js';
import { Replies } from '../api/verdicts.js';

/**
 * Improper pipelining after DATA (RFC 2920 section 3.1: DATA must be the last command of a group;
 * the client waits for 354 before it sends the message). A client that sends message content
 * before our 354 is a spam engine that does not read replies, or an attempt to smuggle content past
 * a reply it never saw. Like Postfix's `reject_unauth_pipelining`, the DATA command is answered
 * `554 5.5.0` and the connection closed (the content, read as commands, must not run).
 *
 * "Sent before our 354" means: already received when the DATA command is dispatched. That is
 *   - bytes after the DATA line in the same received chunk (the parser's write in progress);
 *   - chunks queued behind it in the parser's writable buffer (Node's `_writableState.getBuffer()`:
 *     `writableLength` would count the chunk being written too), or in the socket's readable buffer.
 * DATA is dispatched one event-loop turn late (setImmediate), so bytes that were already waiting in
 * the kernel are read into those buffers first. The 354 goes out in the same turn as the check.
 *
 * Relies on smtp-server internals: `_parser` (an SMTPStream whose `_write`, `_dataMode` and
 * `_remainder` it reads), `_createParser` (STARTTLS makes a new parser) and `_onCommand`. The
 * sources of `_onCommand` and `_createParser` are pinned by hash; with another library version the
 * guard is not installed and the relay logs a warning (`pipelining-guard.test.ts` fails).
 */
export const PINNED_ON_COMMAND_SHA256 = 'ec126bdb02258772f8ae0d78087fdff99b027e2cad826f9a6bd3c4f818b525be';
export const PINNED_CREATE_PARSER_SHA256 = '969851c58da15fb6610e1c84759403dafde70969a5e77186810d1ec8d0c6ab7c';

interface ParserLike {
  _dataMode: boolean;
  _remainder: string;
  /** Node's writable state: getBuffer() lists the chunks queued behind the one being written. */
  _writableState?: { getBuffer?(): unknown[] };
  _write(chunk: Buffer, encoding: BufferEncoding, next: (err?: Error | null) => void): void;
}

interface GuardedConnection {
  _parser: ParserLike | false;
  _socket: { readableLength?: number };
  _createParser(): ParserLike;
  _onCommand(command: Buffer, callback: () => void): void;
  send(code: number, data: string): void;
  close(): void;
  /** Bytes that followed a DATA line in the chunk that carried it. */
  _portcullisAfterData?: number;
}


export function pipeliningGuardHashes(): { onCommand: string; createParser: string } {
  const proto = SMTPConnection.prototype as unknown as GuardedConnection;
  return { onCommand: sourceHash(proto._onCommand), createParser: sourceHash(proto._createParser) };
}

export function canGuardPipelining(): boolean {
  const h = pipeliningGuardHashes();
  return h.onCommand === PINNED_ON_COMMAND_SHA256 && h.createParser === PINNED_CREATE_PARSER_SHA256;
}

const DATA_LINE = /(?:^|\n)DATA[ \t]*\r?\n/i;

function watchParser(conn: GuardedConnection, parser: ParserLike): void {
  const write = parser._write;
  parser._write = function guardedWrite(this: ParserLike, chunk, encoding, next) {
    if (!this._dataMode && chunk && chunk.length) {
      // Only the first DATA line of the chunk matters: it switches the parser to data mode.
      const text = this._remainder + chunk.toString('latin1');
      const m = DATA_LINE.exec(text);
      if (m) conn._portcullisAfterData = text.length - (m.index + m[0].length);
    }
    return write.call(this, chunk, encoding, next);
  };
}

export function installPipeliningGuard(connection: unknown, onRefused?: () => void): void {
  const conn = connection as GuardedConnection;
  if (conn._parser) watchParser(conn, conn._parser);
  const createParser = conn._createParser;
  conn._createParser = function guardedCreateParser(this: GuardedConnection) {
    const parser = createParser.call(this);
    watchParser(this, parser);
    return parser;
  };
  const onCommand = conn._onCommand;
  conn._onCommand = function guardedOnCommand(this: GuardedConnection, command: Buffer, callback: () => void) {
    if (!/^DATA[ \t]*$/i.test(command.toString('latin1'))) return onCommand.call(this, command, callback);
    setImmediate(() => {
      const parser = this._parser;
      const early = (this._portcullisAfterData ?? 0) > 0 || (parser ? (parser._writableState?.getBuffer?.().length ?? 0) > 0 : false) || (this._socket.readableLength ?? 0) > 0;
      this._portcullisAfterData = 0;
      if (!early) return onCommand.call(this, command, callback);
      onRefused?.();
      this.send(Replies.improperPipelining.code, `${Replies.improperPipelining.enhanced} ${Replies.improperPipelining.text}`);
      this.close();
      callback();
    });
  };
}
