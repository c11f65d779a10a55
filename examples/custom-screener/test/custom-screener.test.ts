// The example as a user runs it: `portcullis check` on its config, then `portcullis start` with the
// screener loaded from its file, and swaks / nodemailer checking the screener's replies over SMTP.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureServer, sendMail } from '@portcullis/testkit';
import { parse, stringify } from 'yaml';
import { EXAMPLE, RelayProcess, freePort, startRelay, portcullis, replyTo, swaks, waitFor } from './support.js';

const CONFIG = path.join(EXAMPLE, 'portcullis.yaml');
const PLUGIN = path.join(EXAMPLE, 'subject-words.js');

interface PluginEntry { use: string; with?: Record<string, unknown>; timeout?: string }

/**
 * The example's config, written into `dir`, with the listener on `port`, the hosted domain's next
 * hop at `nexthop`, and the screener loaded by absolute path (the file lives in the example folder).
 * `edit` may change the plugin list further.
 */
function writeConfig(dir: string, port: number, nexthop: string, edit: (plugins: PluginEntry[]) => void = () => undefined): string {
  const doc = parse(readFileSync(CONFIG, 'utf8'));
  doc.listen[0].port = port;
  doc.plugins[0].with.domains['example.test'].nexthop = nexthop;
  assert.equal(doc.plugins[1].use, './subject-words.js');
  doc.plugins[1].use = PLUGIN;
  edit(doc.plugins);
  const file = path.join(dir, 'portcullis.yaml');
  writeFileSync(file, stringify(doc));
  return file;
}

describe('examples/custom-screener', function () {
  let dir: string;
  beforeEach(function () {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-custom-screener-'));
  });
  afterEach(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  describe('portcullis check', function () {
    it('accepts the example config and lists the screener loaded by path, on the data and message hooks', function () {
      const r = portcullis('check', '--config', CONFIG);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.split('\n')[0], `${CONFIG}: the configuration is valid`);
      assert.ok(r.stdout.includes(['  2. subject-words', '     use: ./subject-words.js', `     from: ${PLUGIN}`, '     hooks: data, message', '     timeout: 10s'].join('\n')), r.stdout);
      assert.match(r.stdout, /^ {2}data {8}subject-words$/m);
      assert.match(r.stdout, /^ {2}message {5}subject-words$/m);
      assert.match(r.stdout, /^ {2}rcpt {8}relay-policy$/m);
    });

    it("reports the screener's bad options as plugins[1].with.<key> and exits 78", function () {
      const file = path.join(dir, 'portcullis.yaml');
      writeFileSync(file, readFileSync(CONFIG, 'utf8').replace('words: [lottery, viagra, "crypto-giveaway"]', 'words: [lottery, "two words"]\n      bodyy: true').replace('./subject-words.js', PLUGIN));
      const r = portcullis('check', '--config', file);
      assert.equal(r.status, 78, r.stdout + r.stderr);
      assert.equal(
        r.stderr,
        [
          `${file}: plugins[1].with.words[1]: expected one word (letters, digits, - or ')`,
          `${file}: plugins[1].with: unknown key "bodyy" (did you mean "body"?)`,
          'portcullis: 2 problems in the configuration; the configuration is not valid',
          '',
        ].join('\n'),
      );
    });

    it("type-checks the plugin file against @portcullis/core's types (// @ts-check, tsconfig.json)", function () {
      const tsc = createRequire(path.join(EXAMPLE, 'package.json')).resolve('typescript/bin/tsc');
      const r = spawnSync(process.execPath, [tsc, '-p', path.join(EXAMPLE, 'tsconfig.json')], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stdout + r.stderr);
    });
  });

  describe('the screener in a running relay', function () {
    let next: CaptureServer;
    let relay: RelayProcess;
    let port: number;
    const send = (subject: string) => swaks(`127.0.0.1:${port}`, ['--from', 'someone@sender.test', '--to', 'bob@example.test', '--header', `Subject: ${subject}`]);

    beforeEach(async function () {
      next = await CaptureServer.start();
      port = await freePort();
      relay = await startRelay(writeConfig(dir, port, next.address), port, path.join(dir, 'relay.log'));
    });
    afterEach(async function () {
      await relay?.stop();
      await next?.close();
    });

    it('accepts and delivers a message whose Subject has none of the words', async function () {
      const r = send('Minutes of the Tuesday meeting');
      assert.equal(r.status, 0, r.out);
      assert.match(replyTo(r.out, '.'), /^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
      const [msg] = await next.waitFor(1);
      assert.match(msg!.raw.toString(), /^Subject: Minutes of the Tuesday meeting\r$/m);
    });

    it('refuses a Subject containing a word, in any case, with 550 5.7.1 naming the word', async function () {
      const r = send('You won the LOTTERY!');
      assert.equal(replyTo(r.out, '.'), '550 5.7.1 Message refused: its Subject contains "LOTTERY"');
      const word = send('Free crypto-giveaway, today only');
      assert.equal(replyTo(word.out, '.'), '550 5.7.1 Message refused: its Subject contains "crypto-giveaway"');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(next.messages.length, 0);
    });

    it('matches whole words only: "Lotteryland" passes', async function () {
      const r = send('Tickets for Lotteryland');
      assert.match(replyTo(r.out, '.'), /^250 2\.0\.0 Ok: queued as /, r.out);
      await next.waitFor(1);
    });

    it('decodes an RFC 2047 encoded Subject before looking for the words', function () {
      const encoded = `=?UTF-8?B?${Buffer.from('Gratis: Viagra für alle').toString('base64')}?=`;
      const r = send(encoded);
      assert.ok(r.out.includes(` -> Subject: ${encoded}`), r.out);
      assert.equal(replyTo(r.out, '.'), '550 5.7.1 Message refused: its Subject contains "Viagra"');
    });

    it('finds a word in a base64-encoded text part: part screeners see decoded content', async function () {
      const raw = (type: string) =>
        [
          'From: someone@sender.test',
          'To: bob@example.test',
          'Subject: Quarterly report',
          'MIME-Version: 1.0',
          'Content-Type: multipart/mixed; boundary="b1"',
          '',
          '--b1',
          'Content-Type: text/plain; charset=utf-8',
          '',
          'Please find the report attached.',
          '--b1',
          `Content-Type: ${type}`,
          'Content-Transfer-Encoding: base64',
          '',
          Buffer.from('Also: cheap viagra, see inside.\r\n').toString('base64'),
          '--b1--',
          '',
        ].join('\r\n');
      const text = raw('text/plain; charset=utf-8');
      assert.doesNotMatch(text, /viagra/i, 'the word only appears once decoded');
      const refused = await sendMail({ port, from: 'someone@sender.test', to: 'bob@example.test', raw: text });
      assert.equal(refused.response, '550 5.7.1 Message refused: its text contains "viagra"');
      // Only text parts are read: the same bytes as an application/octet-stream attachment pass.
      const binary = await sendMail({ port, from: 'someone@sender.test', to: 'bob@example.test', raw: raw('application/octet-stream') });
      assert.match(binary.response, /^250 2\.0\.0 Ok: queued as /);
      const [msg] = await next.waitFor(1);
      assert.match(msg!.raw.toString(), /^Subject: Quarterly report\r$/m);
    });
  });

  describe('a screener that throws', function () {
    it('makes the relay answer 451 4.3.0 and log the plugin and the hook, never accept', async function () {
      const next = await CaptureServer.start();
      const port = await freePort();
      const broken = path.join(EXAMPLE, 'test/fixtures/broken-screener.js');
      const config = writeConfig(dir, port, next.address, (plugins) => plugins.push({ use: broken }));
      const relay = await startRelay(config, port, path.join(dir, 'relay.log'));
      try {
        const r = swaks(`127.0.0.1:${port}`, ['--from', 'someone@sender.test', '--to', 'bob@example.test', '--header', 'Subject: Minutes']);
        assert.equal(replyTo(r.out, '.'), '451 4.3.0 Temporary local problem, try again later');
        await waitFor(() => relay.output.includes('plugin \\"broken-screener\\" failed in hook \\"message\\": a bug in the screener'), 'the error line in the log');
        const line = JSON.parse(relay.output.split('\n').find((l) => l.includes('"plugin":"broken-screener"') && l.includes('"level":50'))!);
        assert.equal(line.hook, 'message');
        assert.equal(next.messages.length, 0);
      } finally {
        await relay.stop();
        await next.close();
      }
    });
  });
});
