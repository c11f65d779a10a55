import assert from 'node:assert/strict';
import { CaptureServer, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import clamav from '@portcullis/clamav';
import rspamd from '../src/index.js';
import { Rspamd, freePort } from './support/rspamd.js';
// clamd as plugins/clamav's own tests start it (Debian's clamd, one EICAR signature the test writes).
import { Clamd } from '../../clamav/test/support/clamd.js';
import { cleanMessage, eicarBase64 } from '../../clamav/test/support/messages.js';

const GTUBE = ['XJS*C4JDBQADN1.NSBN3*2IDNEN*', 'GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL', '*C.34X'].join('');
const VIRUS = /^554 5\.7\.1 Message rejected: virus found \(Eicar-Test-Signature(\.UNOFFICIAL)?\)$/;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** GTUBE in the text part of a message with an attachment. */
const withGtube = (raw: string) => raw.replace('See the attachment.', `See the attachment.\r\n${GTUBE}`);
/** Spam to rspamd, clean to clamd. */
const gtube = () => withGtube(cleanMessage('gtube'));

describe('rspamd and clamav in the same pass (real rspamd, real clamd)', function () {
  this.timeout(90_000);
  let daemon: Rspamd;
  let clamd: Clamd;
  let sink: CaptureServer;
  const relays: TestRelay[] = [];

  async function relayWith(clamdAddress: string): Promise<TestRelay> {
    const relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, clamav, rspamd },
      config: {
        plugins: [
          { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } } } },
          // clamav first in order: the stricter verdict must still win over it.
          { use: 'clamav', with: { servers: [clamdAddress], timeout: '10s' } },
          { use: 'rspamd', with: { servers: [daemon.address], timeout: '10s' } },
        ],
      },
    });
    relays.push(relay);
    return relay;
  }
  const send = (relay: TestRelay, raw: string) => sendMail({ port: relay.port, from: 'alice@remote.test', to: 'bob@example.com', raw });

  before(async function () {
    this.timeout(240_000); // rspamd's start-up on a loaded machine (see support/rspamd.ts)
    [daemon, clamd] = await Promise.all([Rspamd.start(), Clamd.start()]);
    sink = await CaptureServer.start({ host: '127.0.0.1' });
  });
  after(async () => {
    for (const r of relays) await r.stop();
    await sink?.close();
    await daemon?.close();
    await clamd?.close();
  });

  it("scans one read of the message with both: rspamd got every byte in one task, clamd's clean and rspamd's score are both on the delivered message", async () => {
    const relay = await relayWith(clamd.address);
    const before = sink.messages.length;
    const raw = cleanMessage('both scanners', 30_000);
    const r = await send(relay, raw);
    assert.match(r.response, /^250 2\.0\.0 Ok: queued as (\S+)$/);
    const id = /queued as (\S+)$/.exec(r.response)![1]!;
    const got = (await sink.waitFor(before + 1))[before]!.raw.toString('latin1');
    assert.match(got, /\r\nX-Portcullis-Virus: clean\r\n/);
    assert.match(got, /\r\nX-Spam-Status: No, score=/);
    // rspamd logs each task with our Queue-Id and the size it received: one task, the whole message.
    const tasks = daemon.log().split('\n').filter((l) => l.includes(`queue-id: <${id}>`) && l.includes('rspamd_message_parse'));
    assert.equal(tasks.length, 1, tasks.join('\n'));
    assert.match(tasks[0]!, new RegExp(`size: ${Buffer.byteLength(raw)};`));
  });

  it("rejects a virus with clamav's 554 when rspamd finds nothing", async () => {
    const relay = await relayWith(clamd.address);
    assert.match((await send(relay, eicarBase64())).response, VIRUS);
  });

  it("rejects spam with rspamd's 550 when clamav finds nothing", async () => {
    const relay = await relayWith(clamd.address);
    assert.equal((await send(relay, gtube())).response, '550 5.7.1 Gtube pattern');
  });

  it('lets the stricter verdict win: rspamd\'s 550 over clamav\'s 451 when clamd is down, though clamav comes first', async () => {
    const relay = await relayWith(`127.0.0.1:${await freePort()}`);
    const before = sink.messages.length;
    assert.equal((await send(relay, gtube())).response, '550 5.7.1 Gtube pattern');
    assert.equal((await send(relay, cleanMessage('no clamd'))).response, '451 4.7.0 Message not scanned (virus scanner unreachable), try again later');
    await pause(300);
    assert.equal(sink.messages.length, before, 'nothing delivered');
  });

  it('answers with the first plugin in order when both reject (clamav, then rspamd)', async () => {
    const relay = await relayWith(clamd.address);
    const both = withGtube(eicarBase64());
    assert.notEqual(both, eicarBase64());
    assert.match((await send(relay, both)).response, VIRUS);
  });
});
