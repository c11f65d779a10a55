import assert from 'node:assert/strict';
import { readFileSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { CaptureServer, sendMail } from '@portcullis/testkit';
import { Clamd, eicar } from '../../../plugins/clamav/test/support/clamd.js';
import { cleanupDirs, freePort, killAll, relayYaml, runCli, startCli, tempDir, writeConfig } from './helpers.js';

const CRLF = '\r\n';
function withAttachment(subject: string, filename: string, type: string, body: Buffer): string {
  const b = 'b-' + Math.random().toString(36).slice(2);
  return [
    'From: alice@sender.test', 'To: bob@example.com', `Subject: ${subject}`, `Message-ID: <${subject.replace(/\W/g, '')}@sender.test>`, 'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${b}"`, '', `--${b}`, 'Content-Type: text/plain; charset=utf-8', '', 'See the attachment.', `--${b}`,
    `Content-Type: ${type}; name="${filename}"`, `Content-Disposition: attachment; filename="${filename}"`, 'Content-Transfer-Encoding: base64', '',
    (body.toString('base64').match(/.{1,76}/g) ?? []).join(CRLF), `--${b}--`, '',
  ].join(CRLF);
}

interface Item {
  id: string;
  source: 'attachments' | 'clamav';
  sender: string;
  recipients: string[];
  reason: string;
  released?: { queueId: string };
  rescan?: { result: string };
}

describe('portcullis quarantine', function () {
  this.timeout(90_000);
  let clamd: Clamd;
  before(async () => (clamd = await Clamd.start()));
  after(async () => {
    await clamd?.close();
    cleanupDirs();
  });
  afterEach(killAll);

  /** A relay config with attachments quarantining exe files (and clamav quarantining viruses, if asked). */
  async function setUp(withClamav: boolean) {
    const dir = tempDir();
    const port = await freePort();
    const nexthop = await CaptureServer.start();
    const clamavEntry = withClamav ? `  - use: clamav\n    with: { servers: ["${clamd.address}"], action: quarantine, quarantineDir: ./quarantine/virus }\n` : '';
    const more = `  - use: attachments
    with: { action: quarantine, block: [exe], quarantine: { dir: ./quarantine/parts, retention: 30d } }
${clamavEntry}`;
    const file = writeConfig(dir, 'relay.yaml', relayYaml(port, { 'example.com': nexthop.address }, { more }));
    return { dir, file, port, nexthop };
  }

  it('lists, shows, rescans (real clamd), releases (delivered by the relay) and deletes a stripped attachment and a virus message; purge applies the retention', async () => {
    const { dir, file, port, nexthop } = await setUp(true);
    try {
      const relay = startCli(['start', '--config', file]);
      await relay.readyPort();
      const program = Buffer.from('pretend this is a program\n');
      const stripped = await sendMail({ port, from: 'alice@sender.test', to: 'bob@example.com', raw: withAttachment('has exe', 'setup.exe', 'application/octet-stream', program) });
      assert.match(stripped.response, /^250 /, 'the message is delivered without its attachment');
      const virus = await sendMail({ port, from: 'alice@sender.test', to: 'bob@example.com', raw: withAttachment('has virus', 'note.txt', 'text/plain', Buffer.from(eicar(), 'latin1')) });
      assert.match(virus.response, /^554 5\.7\.1 Message rejected: virus found .*; quarantined as /);
      const [first] = await nexthop.waitFor(1);
      assert.match(first!.raw.toString(), /An attachment was removed from this message by the mail relay\./);

      const list = async () => JSON.parse((await runCli(['quarantine', 'list', '--json', '--config', file])).stdout) as Item[];
      let items = await list();
      assert.equal(items.length, 2);
      const part = items.find((i) => i.source === 'attachments')!;
      const msg = items.find((i) => i.source === 'clamav')!;
      assert.deepEqual([part.sender, part.recipients], ['alice@sender.test', ['bob@example.com']]);
      assert.match(part.reason, /setup\.exe/);
      assert.match(msg.reason, /^virus: Eicar-Test-Signature/);
      const table = (await runCli(['quarantine', 'list', '--config', file])).stdout;
      assert.match(table, new RegExp(`^${part.id}\\s+attachments\\s+.*alice@sender\\.test\\s+bob@example\\.com\\s+held`, 'm'));
      assert.match(table, /^2 items in quarantine$/m);

      const shown = JSON.parse((await runCli(['quarantine', 'show', msg.id, '--config', file])).stdout) as { headers: string; meta: { viruses: string[] } };
      assert.match(shown.headers, /Subject: has virus/);
      assert.deepEqual(shown.meta.viruses, ['Eicar-Test-Signature.UNOFFICIAL']);

      const rescan = await runCli(['quarantine', 'rescan', '--config', file], { timeoutMs: 30_000 });
      assert.equal(rescan.code, 0, rescan.stderr);
      assert.match(rescan.stdout, new RegExp(`^${part.id}: clean$`, 'm'));
      assert.match(rescan.stdout, new RegExp(`^${msg.id}: infected \\(Eicar-Test-Signature\\.UNOFFICIAL\\)$`, 'm'));
      assert.match(rescan.stdout, /^1 clean, 1 infected, 0 not scanned$/m);

      // Release: both go through the relay's queue to the next hop.
      const rel = await runCli(['quarantine', 'release', part.id, msg.id, '--config', file]);
      assert.equal(rel.code, 0, rel.stderr);
      assert.match(rel.stdout, new RegExp(`^${part.id}: released as \\w+ to bob@example\\.com$`, 'm'));
      assert.match(rel.stderr, /"msg":"operator action: quarantine release"/);
      const got = await nexthop.waitFor(3, 15_000);
      const released = got.slice(1).map((m) => m.raw.toString());
      const partMail = released.find((r) => /Subject: Released attachment: setup\.exe/.test(r))!;
      assert.ok(partMail, 'the stripped attachment arrived');
      assert.match(partMail, /In-Reply-To: <hasexe@sender\.test>/);
      assert.match(partMail, /Content-Disposition: attachment; filename="setup\.exe"/);
      assert.ok(partMail.includes(program.toString('base64')), 'with its original bytes');
      const virusMail = released.find((r) => /Subject: has virus/.test(r))!;
      assert.match(virusMail, /^X-Portcullis-Released: quarantine \w+ \(clamav\) released by /m);
      assert.ok(virusMail.replace(/\r\n/g, '\n').includes(readFileSync(path.join(dir, 'quarantine', 'virus', `${msg.id}.eml`), 'latin1').replace(/\r\n/g, '\n')), 'the original message, byte for byte after the release header');
      await relay.waitFor('the operator action in the relay log', () => relay.logs().find((l) => String(l['msg']).startsWith(`operator action: quarantine release of ${part.id}`)));
      items = await list();
      assert.ok(items.every((i) => i.released?.queueId), 'both are marked released');
      assert.equal(items.find((i) => i.id === part.id)!.rescan!.result, 'clean');

      // Retention: an item older than 30 days goes on purge; the other stays until deleted.
      const old = new Date(Date.now() - 31 * 86_400_000);
      utimesSync(path.join(dir, 'quarantine', 'parts', `${part.id}.json`), old, old);
      const purge = await runCli(['quarantine', 'purge', '--config', file]);
      assert.equal(purge.stdout, `1 item(s) removed: ${part.id}\n`);
      const del = await runCli(['quarantine', 'delete', msg.id, '--config', file]);
      assert.equal(del.stdout, `${msg.id}: deleted\n`);
      assert.deepEqual(await list(), []);
      const missing = await runCli(['quarantine', 'show', msg.id, '--config', file]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /no quarantined item/);
    } finally {
      await nexthop.close();
    }
  });

  it('release with the relay stopped puts the item in the spool under the spool lock, says so, and the relay delivers it when it starts', async () => {
    const { file, port, nexthop } = await setUp(false);
    try {
      let relay = startCli(['start', '--config', file]);
      await relay.readyPort();
      const program = Buffer.from('a program the operator decided to let through\n');
      const r = await sendMail({ port, from: 'alice@sender.test', to: 'bob@example.com', raw: withAttachment('offline release', 'tool.exe', 'application/octet-stream', program) });
      assert.match(r.response, /^250 /);
      await nexthop.waitFor(1);
      relay.kill('SIGTERM');
      assert.equal((await relay.waitExit(20_000)).code, 0);

      const [item] = JSON.parse((await runCli(['quarantine', 'list', '--json', '--config', file])).stdout) as Item[];
      const rel = await runCli(['quarantine', 'release', item!.id, '--config', file]);
      assert.equal(rel.code, 0, rel.stderr);
      assert.match(rel.stdout, new RegExp(`^${item!.id}: released as (\\w+) to bob@example\\.com \\(relay not running: delivered when it starts\\)$`, 'm'));
      const queueId = new RegExp(`released as (\\w+)`).exec(rel.stdout)![1]!;
      // Queued in the spool, as the offline queue commands see it.
      const queued = JSON.parse((await runCli(['queue', 'list', '--json', '--config', file])).stdout) as Array<{ id: string; recipients: string[] }>;
      assert.deepEqual(queued.map((q) => [q.id, q.recipients]), [[queueId, ['bob@example.com']]]);
      assert.equal(nexthop.messages.length, 1, 'nothing is delivered while the relay is stopped');

      relay = startCli(['start', '--config', file]);
      await relay.readyPort();
      const [, released] = await nexthop.waitFor(2, 15_000);
      const raw = released!.raw.toString();
      assert.match(raw, /Subject: Released attachment: tool\.exe/);
      assert.ok(raw.includes(program.toString('base64')), 'with its original bytes');
      const list = JSON.parse((await runCli(['quarantine', 'list', '--json', '--config', file])).stdout) as Item[];
      assert.equal(list[0]!.released?.queueId, queueId);
    } finally {
      await nexthop.close();
    }
  });
});
