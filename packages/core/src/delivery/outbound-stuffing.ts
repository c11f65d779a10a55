import type SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { DotStuffer } from './dot-stuffer.js';
import { canSwapDataEncoder, swapDataEncoder } from '../adapter/nodemailer.js';

/**
 * nodemailer's smtp-connection encodes DATA with its own DataStream, a per-byte JavaScript loop,
 * and has no option to take data that is already encoded. `useFastDotStuffing` has the nodemailer
 * adapter swap the library's encoder for DotStuffer on one connection; its output is the same byte
 * for byte (dot-stuffer.test.ts compares the two on every case).
 *
 * The swap is the adapter's (adapter/nodemailer.ts `swapDataEncoder`, pinned there to the exact
 * source of `_createSendStream`): with another library version `canUseFastDotStuffing()` is false,
 * connections keep the library's encoder, and the pin test fails, so an upgrade cannot silently
 * change what goes on the wire. This module only supplies the encoder.
 */
export function canUseFastDotStuffing(): boolean {
  return canSwapDataEncoder();
}

/** Makes `conn` encode DATA with DotStuffer (no-op, false, when the library is not the pinned one). */
export function useFastDotStuffing(conn: InstanceType<typeof SMTPConnection>): boolean {
  return swapDataEncoder(conn, () => new DotStuffer());
}
