import assert from 'node:assert/strict';
import { CaptureServer, freePort, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import recipients from '../src/index.js';
import { rcptReply, rcptReplies } from './support/smtp.js';

const builtins = { recipients, 'relay-policy': relayPolicy };
const UNKNOWN = (a: string) => `550 5.1.1 <${a}>: Recipient address rejected: User unknown`;

/** An internal server that knows its users, counting every RCPT and MAIL FROM it is asked. */
class InternalServer {
  readonly rcpts: string[] = [];
  readonly senders: string[] = [];
  server!: CaptureServer;
  constructor(private readonly users: ReadonlySet<string> | 'all') {}
  async start(): Promise<this> {
    this.server = await CaptureServer.start({
      onRcpt: (rcpt) => {
        this.rcpts.push(rcpt.toLowerCase());
        if (this.users === 'all' || this.users.has(rcpt.toLowerCase())) return undefined;
        return [550, '5.1.1 User unknown in local recipient table'];
      },
      server: {
        onMailFrom: (addr, _s, cb) => {
          this.senders.push(addr.address);
          cb();
        },
      },
    });
    return this;
  }
  asked(addr: string): number {
    return this.rcpts.filter((r) => r === addr).length;
  }
}

describe('recipients: callout (address verification) to the next hop', function () {
  this.timeout(60_000);
  let internal: InternalServer;
  let catchAll: InternalServer;
  let t: TestRelay;
  let downPort: number;
  before(async () => {
    internal = await new InternalServer(new Set(['alice@hosted.example', 'bob@hosted.example', 'carol@hosted.example'])).start();
    catchAll = await new InternalServer('all').start();
    downPort = await freePort();
    t = await startTestRelay({
      builtins,
      config: {
        plugins: [
          {
            use: 'recipients',
            with: {
              sources: { verify: { callout: { timeout: '3s' } } },
              domains: { 'hosted.example': ['verify'], 'catchall.example': ['verify'], 'down.example': ['verify'] },
            },
          },
          {
            use: 'relay-policy',
            with: {
              domains: {
                'hosted.example': { nexthop: internal.server.address, tls: 'none' },
                'catchall.example': { nexthop: catchAll.server.address, tls: 'none' },
                'down.example': { nexthop: `127.0.0.1:${downPort}`, tls: 'none' },
              },
            },
          },
        ],
      },
    });
  });
  after(async () => {
    await t?.stop();
    await internal?.server.close();
    await catchAll?.server.close();
  });

  it('accepts an address the next hop knows with 250, probing with MAIL FROM postmaster@ the domain (not <>) and sending nothing', async () => {
    assert.match(await rcptReply(t.port, 'alice@hosted.example'), /^250 /);
    assert.deepEqual(internal.senders, ['postmaster@hosted.example']);
    assert.equal(internal.asked('alice@hosted.example'), 1);
    assert.equal(internal.rcpts.filter((r) => r.startsWith('portcullis-probe-')).length, 1, 'one random-address probe for the catch-all check');
    assert.equal(internal.server.messages.length, 0, 'the probe never reaches DATA');
  });

  it('refuses an address the next hop does not know with 550 5.1.1', async () => {
    assert.equal(await rcptReply(t.port, 'mallory@hosted.example'), UNKNOWN('mallory@hosted.example'));
    assert.equal(internal.asked('mallory@hosted.example'), 1);
  });

  it('answers again from the cache: no second callout (counted at the next hop)', async () => {
    const known = internal.asked('alice@hosted.example');
    const unknown = internal.asked('mallory@hosted.example');
    assert.match(await rcptReply(t.port, 'alice@hosted.example'), /^250 /);
    assert.match(await rcptReply(t.port, 'Alice@hosted.example'), /^250 /);
    assert.equal(await rcptReply(t.port, 'mallory@hosted.example'), UNKNOWN('mallory@hosted.example'));
    assert.equal(internal.asked('alice@hosted.example'), known);
    assert.equal(internal.asked('mallory@hosted.example'), unknown);
  });

  it('shares one probe between concurrent checks of the same address', async () => {
    const replies = await Promise.all(Array.from({ length: 6 }, () => rcptReply(t.port, 'bob@hosted.example')));
    for (const r of replies) assert.match(r, /^250 /);
    assert.equal(internal.asked('bob@hosted.example'), 1);
  });

  it('answers 450 4.1.1 when the next hop is down, and nothing is queued', async () => {
    assert.equal(await rcptReply(t.port, 'user@down.example'), '450 4.1.1 <user@down.example>: Recipient address rejected: unverified address: the next hop cannot verify it now, try again later');
    const sent = await sendMail({ port: t.port, from: 'someone@outside.test', to: 'user@down.example', text: 'hello' });
    assert.equal(sent.ok, false);
    assert.equal(sent.code, 450);
    assert.equal(((await t.relay.status()) as { queue: { messages: number } }).queue.messages, 0, 'nothing queued');
  });

  it('detects a catch-all next hop by a random address and accepts its domain without per-address probes', async () => {
    const replies = await rcptReplies(t.port, ['one@catchall.example', 'two@catchall.example', 'three@catchall.example']);
    for (const r of replies) assert.match(r.reply, /^250 /);
    assert.equal(catchAll.rcpts.length, 1, `one probe, of a random address; the next hop was asked ${JSON.stringify(catchAll.rcpts)}`);
    assert.match(catchAll.rcpts[0]!, /^portcullis-probe-[0-9a-f]{12}@catchall\.example$/);
  });

  it('keeps its cached answers over a reload with the same sources, and asks again once the sources changed', async () => {
    const asked = internal.asked('alice@hosted.example');
    await t.relay.reload(t.relay.config);
    assert.match(await rcptReply(t.port, 'alice@hosted.example'), /^250 /);
    assert.equal(internal.asked('alice@hosted.example'), asked, 'same sources: the cached answer');
    const changed = {
      ...t.relay.config,
      plugins: t.relay.config.plugins.map((p) => (p.use === 'recipients' ? { ...p, with: { ...(p.with as object), sources: { verify: { callout: { timeout: '4s' } } } } } : p)),
    };
    await t.relay.reload(changed);
    assert.match(await rcptReply(t.port, 'alice@hosted.example'), /^250 /);
    assert.equal(internal.asked('alice@hosted.example'), asked + 1, 'changed sources: asked again');
  });

  it('delivers mail to a verified recipient as usual', async () => {
    const sent = await sendMail({ port: t.port, from: 'someone@outside.test', to: 'carol@hosted.example', text: 'hello' });
    assert.equal(sent.ok, true, sent.response);
    await internal.server.waitFor(1);
    assert.deepEqual(internal.server.messages[0]!.to, ['carol@hosted.example']);
  });
});

describe('recipients: callout to a catch-all next hop that goes down', function () {
  this.timeout(60_000);
  it('keeps the domain\'s catch-all answer as its last known good: after a flush, with the next hop down, a never-seen address is accepted with 250', async () => {
    const hop = await new InternalServer('all').start();
    const t = await startTestRelay({
      builtins,
      config: {
        plugins: [
          { use: 'recipients', with: { sources: { verify: { callout: { timeout: '2s' } } }, domains: { 'catchall.example': ['verify'] } } },
          { use: 'relay-policy', with: { domains: { 'catchall.example': { nexthop: hop.server.address, tls: 'none' } } } },
        ],
      },
    });
    try {
      for (const a of ['first', 'second', 'third']) assert.match(await rcptReply(t.port, `${a}@catchall.example`), /^250 /);
      assert.equal(hop.rcpts.length, 1, `only the random-address probe reached the next hop: ${JSON.stringify(hop.rcpts)}`);
      await hop.server.close();
      const p = t.relay.driver.plugins.find((x) => x.instance.name === 'recipients')!;
      assert.equal(await p.instance.commands!['flush']!.run([], { out: () => undefined, err: () => undefined }), 0);
      assert.match(await rcptReply(t.port, 'never-seen@catchall.example'), /^250 /);
    } finally {
      await t.stop();
    }
  });
});
