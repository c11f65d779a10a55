import assert from 'node:assert/strict';
import { RawSmtp, startTestRelay } from '@portcullis/testkit';

/** The greeting delay per listener (the pinned mechanism itself is tested in packages/core). */
describe('greeting delay per listener', () => {
  async function greetingTime(delay: string): Promise<number> {
    const r = await startTestRelay({ config: { listen: [{ host: '127.0.0.1', port: 0, greetingDelay: delay }] } });
    try {
      const t0 = performance.now();
      const c = await RawSmtp.connect(r.port);
      assert.match(await c.read(), /^220 relay\.test ESMTP Portcullis/);
      const ms = performance.now() - t0;
      c.close();
      return ms;
    } finally {
      await r.stop();
    }
  }

  it('greets at once with greetingDelay 0 and waits with greetingDelay 400ms', async () => {
    const fast = await greetingTime('0');
    const slow = await greetingTime('400ms');
    // "At once" against 400 ms: well under the delay, with room for a loaded machine (was 60 ms).
    assert.ok(fast < 250, `greeting took ${fast} ms with no delay`);
    assert.ok(slow >= 390, `greeting took ${slow} ms with a 400 ms delay`);
  });

  it('still refuses an early talker before the greeting', async () => {
    const r = await startTestRelay({ config: { listen: [{ host: '127.0.0.1', port: 0, greetingDelay: '300ms' }] } });
    try {
      const c = await RawSmtp.connect(r.port);
      c.write('EHLO too-early\r\n');
      const reply = await c.read();
      assert.match(reply, /^421 /);
      c.close();
    } finally {
      await r.stop();
    }
  });
});
