import assert from 'node:assert/strict';
import type { CaptureServer } from '../servers/capture-server.js';
import { freePort } from '../clients/ports.js';
import { startSilentServer } from '../servers/silent-server.js';
import type { TestRelay } from '../relays/test-relay.js';

/** The options a scanner plugin (clamav, rspamd, spamassassin, ...) shares for its backend. */
export interface ScannerBackendOptions {
  servers: string[];
  timeout?: string;
  onError?: 'tempfail' | 'accept' | 'reject';
}

/** What `describeScannerFailClosed` needs to know about one scanner plugin and its test setup. */
export interface ScannerFailClosedSpec {
  /** The backend as titles name it: `clamd`, `rspamd`. */
  readonly backend: string;
  /** Starts a relay (delivering to `sink()`) whose scanner plugin has these options. */
  relayWith(options: ScannerBackendOptions): Promise<TestRelay>;
  /** Sends `raw` through `relay`; the reply to the end of data. */
  send(relay: TestRelay, raw: string): Promise<{ response: string }>;
  /** The next hop; read when a test runs (set it in `before`). */
  sink(): CaptureServer;
  /** A clean message; `tag` tells the cases apart. */
  message(tag: string): string;
  /** The exact replies: when the backend timed out (onError tempfail), when it is down and onError is reject. */
  readonly replies: { readonly timedOut: string; readonly unreachableReject: string };
  /** What the relay puts above the message when it delivers it unscanned (onError accept), anchored at the end. */
  readonly unscannedHeader: RegExp;
  /**
   * A backend that takes the connection and does not answer within 1 s. Default: a silent TCP server
   * (`startSilentServer`); a plugin whose protocol can be answered late passes its own.
   */
  hangingBackend?(): Promise<{ address: string; close(): Promise<void> }>;
  /** The longest the 451 may take with `timeout: 1s` (ms); the machine is shared, so keep it generous. */
  readonly maxMs: number;
  /** mocha's `it` by default; the test kit's own test records the cases instead. */
  readonly mocha?: { it(title: string, fn: () => Promise<void>): unknown };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The fail-closed cases every scanner plugin owes (docs/hooks.md, "Fail closed, temporarily"), as
 * mocha tests, for a plugin whose backend options are `servers`, `timeout` and `onError`:
 * - a backend that hangs gives the exact `replies.timedOut` after the timeout (not before 900 ms,
 *   not after `maxMs`), and nothing reaches the next hop;
 * - a backend that is down, with `onError: reject`, gives exactly `replies.unreachableReject`;
 * - a backend that is down, with `onError: accept`, delivers the message byte for byte under
 *   `unscannedHeader`.
 * Call it inside a `describe`; the relays it starts are the plugin test's (`relayWith`) to stop.
 */
export function describeScannerFailClosed(spec: ScannerFailClosedSpec): void {
  const it = spec.mocha?.it ?? (globalThis as unknown as { it: (t: string, fn: () => Promise<void>) => unknown }).it;
  /** Nothing new reached the next hop (delivery is asynchronous: time for it to show up if it were queued). */
  const assertNothingDelivered = async (before: number) => {
    await pause(300);
    assert.equal(spec.sink().messages.length, before);
  };
  const hanging = spec.hangingBackend ?? (async () => {
    const s = await startSilentServer();
    return { address: `127.0.0.1:${s.port}`, close: () => s.close() };
  });

  it(`gives "${spec.replies.timedOut}" after the 1 s timeout when ${spec.backend} takes the connection and does not answer, and delivers nothing`, async () => {
    const backend = await hanging();
    try {
      const relay = await spec.relayWith({ servers: [backend.address], timeout: '1s' });
      const before = spec.sink().messages.length;
      const started = Date.now();
      const r = await spec.send(relay, spec.message('hang'));
      const took = Date.now() - started;
      assert.equal(r.response, spec.replies.timedOut);
      assert.ok(took >= 900 && took < spec.maxMs, `answered after ${took} ms`);
      await assertNothingDelivered(before);
    } finally {
      await backend.close();
    }
  });

  it(`rejects with "${spec.replies.unreachableReject}" when ${spec.backend} is unreachable and onError is reject, and delivers nothing`, async () => {
    const relay = await spec.relayWith({ servers: [`127.0.0.1:${await freePort()}`], onError: 'reject' });
    const before = spec.sink().messages.length;
    assert.equal((await spec.send(relay, spec.message('reject policy'))).response, spec.replies.unreachableReject);
    await assertNothingDelivered(before);
  });

  it(`delivers the message unchanged under its "unscanned" header when ${spec.backend} is unreachable and onError is accept`, async () => {
    const relay = await spec.relayWith({ servers: [`127.0.0.1:${await freePort()}`], onError: 'accept' });
    const before = spec.sink().messages.length;
    const raw = spec.message('accept policy');
    assert.match((await spec.send(relay, raw)).response, /^250 /);
    const got = (await spec.sink().waitFor(before + 1))[before]!.raw.toString('latin1');
    assert.ok(got.endsWith(raw), 'the message reached the next hop byte for byte');
    assert.match(got.slice(0, got.length - raw.length), spec.unscannedHeader);
  });
}
