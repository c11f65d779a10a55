import assert from 'node:assert/strict';
import { CaptureServer, sendMail } from '@portcullis/testkit';
import { cleanupDirs, freePort, killAll, runCli, startCli, tempDir, writeConfig } from './helpers.js';

const config = (port: number, adminPort: number, nexthop: string, domains: string[], extra = '') => `hostname: relay.test
listen: [{ host: 127.0.0.1, port: ${port}, greetingDelay: 0 }]
spool: { dir: ./spool }
admin: { enabled: true, port: ${adminPort} }
plugins:
  - use: relay-policy
    with:
      domains:
${domains.map((d) => `        ${d}: { nexthop: "${nexthop}", tls: none }`).join('\n')}
${extra}`;

describe('configuration reload', function () {
  this.timeout(90_000);
  afterEach(killAll);
  after(cleanupDirs);

  it('SIGHUP under continuous load changes the hosted domains with no failed or lost message; a broken config keeps the running one', async () => {
    const dir = tempDir();
    const port = await freePort();
    const adminPort = await freePort();
    const nexthop = await CaptureServer.start();
    try {
      const file = writeConfig(dir, 'relay.yaml', config(port, adminPort, nexthop.address, ['keep.test', 'old.test']));
      const relay = startCli(['start', '--config', file]);
      await relay.readyPort();
      assert.equal((await sendMail({ port, from: 'a@client.test', to: 'x@old.test', subject: 'before', text: 'x' })).ok, true);

      // Continuous load: 4 clients, a new connection per message, for about 6 s (at most 3000 messages).
      const replies: Array<{ i: number; response: string }> = [];
      let stop = false;
      let n = 0;
      const deadline = Date.now() + 6_000;
      const loadDone = Promise.all(
        Array.from({ length: 4 }, async () => {
          while (!stop && Date.now() < deadline && n < 3000) {
            const i = n++;
            const r = await sendMail({ port, from: `load${i}@client.test`, to: `user${i % 5}@keep.test`, subject: `load ${i}`, text: `load message ${i}` });
            replies.push({ i, response: r.response });
          }
        }),
      );
      await new Promise((r) => setTimeout(r, 1_500));
      writeConfig(dir, 'relay.yaml', config(port, adminPort, nexthop.address, ['keep.test', 'new.test']));
      relay.kill('SIGHUP');
      await relay.waitFor('the reload', () => relay.logs().find((l) => l['msg'] === 'configuration reloaded: new sessions use it'));
      assert.equal((await sendMail({ port, from: 'a@client.test', to: 'x@new.test', subject: 'after', text: 'x' })).ok, true, 'the new domain is hosted');
      assert.match((await sendMail({ port, from: 'a@client.test', to: 'x@old.test', subject: 'after', text: 'x' })).response, /^550 5\.7\.1 /, 'the removed one is not');

      await new Promise((r) => setTimeout(r, 1_000));
      // A broken config: SIGHUP logs the problem (file and key) and the running config stays.
      writeConfig(dir, 'relay.yaml', config(port, adminPort, nexthop.address, ['keep.test']).replace('domains:', 'domainz:'));
      relay.kill('SIGHUP');
      const failed = await relay.waitFor('the failed reload', () => relay.logs().find((l) => String(l['msg']).startsWith('configuration reload failed')));
      assert.match(String(failed['msg']), /relay\.yaml: plugins\[0\]\.with: unknown key "domainz"/);
      const cmd = await runCli(['reload', '--config', file]);
      assert.equal(cmd.code, 1);
      assert.match(cmd.stderr, /the running configuration is kept:\n.*relay\.yaml: plugins\[0\]\.with: unknown key "domainz"/);
      assert.equal((await sendMail({ port, from: 'a@client.test', to: 'x@new.test', subject: 'still', text: 'x' })).ok, true, 'the running config still hosts new.test');

      // A good config again, through `portcullis reload`.
      writeConfig(dir, 'relay.yaml', config(port, adminPort, nexthop.address, ['keep.test', 'new.test', 'third.test']));
      const ok = await runCli(['reload', '--config', file]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout, 'configuration reloaded; new sessions use plugins: relay-policy\n');
      assert.equal((await sendMail({ port, from: 'a@client.test', to: 'x@third.test', subject: 'third', text: 'x' })).ok, true);

      stop = true;
      await loadDone;
      const refused = replies.filter((r) => !/^250 2\.0\.0 Ok: queued as /.test(r.response));
      assert.deepEqual(refused, [], 'every message of the load got its 250');
      assert.ok(replies.length > 50, `a real load (${replies.length} messages)`);
      // before + load + new.test + still + third
      await nexthop.waitFor(replies.length + 4, 30_000);
      const subjects = new Set(nexthop.messages.map((m) => /^Subject: (.*)$/m.exec(m.raw.toString())?.[1]));
      for (const r of replies) assert.ok(subjects.has(`load ${r.i}`), `load ${r.i} arrived`);
      assert.equal(nexthop.messages.length, replies.length + 4, 'nothing arrived twice');

      const metrics = await fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text());
      assert.match(metrics, /^portcullis_config_reloads_total\{result="ok"\} 2$/m);
      assert.match(metrics, /^portcullis_config_reloads_total\{result="failed"\} 2$/m);
      relay.kill('SIGTERM');
      assert.equal((await relay.waitExit(20_000)).code, 0);
    } finally {
      await nexthop.close();
    }
  });

  it('refuses to change the listeners while running, and says to restart', async () => {
    const dir = tempDir();
    const port = await freePort();
    const adminPort = await freePort();
    const file = writeConfig(dir, 'relay.yaml', config(port, adminPort, '127.0.0.1:9', ['keep.test']));
    const relay = startCli(['start', '--config', file]);
    await relay.readyPort();
    writeConfig(dir, 'relay.yaml', config(port + 1, adminPort, '127.0.0.1:9', ['keep.test']));
    const r = await runCli(['reload', '--config', file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /relay\.yaml: listen: cannot change while the relay runs; restart it to apply this change/);
  });
});
