import assert from 'node:assert/strict';
import { CaptureServer, hostedRelay, sendMail, startTestRelay, waitUntil, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import attachments from '@portcullis/attachments';
import clamav from '@portcullis/clamav';
import { Clamd, eicar } from '../plugins/clamav/test/support/clamd.js';
import { adminGet, key, parseMetrics, promtoolCheckMetrics } from './support/admin.js';

const CRLF = '\r\n';
function withAttachment(subject: string, filename: string, type: string, body: string): string {
  const b = 'b-' + Math.random().toString(36).slice(2);
  return [
    'From: alice@sender.test', 'To: bob@example.com', `Subject: ${subject}`, `Message-ID: <${Math.random().toString(36).slice(2)}@sender.test>`, 'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${b}"`, '', `--${b}`, 'Content-Type: text/plain; charset=utf-8', '', 'See the attachment.', `--${b}`,
    `Content-Type: ${type}; name="${filename}"`, `Content-Disposition: attachment; filename="${filename}"`, 'Content-Transfer-Encoding: base64', '',
    (Buffer.from(body, 'latin1').toString('base64').match(/.{1,76}/g) ?? []).join(CRLF), `--${b}--`, '',
  ].join(CRLF);
}

describe('metrics on the admin listener', function () {
  this.timeout(60_000);
  let clamd: Clamd;
  let ok: CaptureServer;
  let later: CaptureServer;
  let never: CaptureServer;
  let senderMx: CaptureServer;
  let relay: TestRelay;
  let admin: number;
  const token = 'metrics-test-token-0123456789';

  before(async () => {
    clamd = await Clamd.start();
    later = await CaptureServer.start({ onRcpt: () => [451, '4.3.2 Not now'] });
    never = await CaptureServer.start({ onRcpt: () => [550, '5.1.1 No such user'] });
    senderMx = await CaptureServer.start();
    const hosted = await hostedRelay({
      builtins: { 'relay-policy': relayPolicy, attachments, clamav },
      domain: 'example.com',
      policy: {
        domains: {
          'deferred.test': { nexthop: later.address, tls: 'none' },
          'bounced.test': { nexthop: never.address, tls: 'none' },
          'sender.test': { nexthop: senderMx.address, tls: 'none' },
        },
      },
      config: {
        listen: [{ name: 'mx', host: '127.0.0.1', port: 0, greetingDelay: 0 }],
        admin: { enabled: true, port: 0, token },
        delivery: { retrySchedule: ['1h'] },
      },
      plugins: [
        { use: 'attachments', with: { action: 'block', block: ['exe'] } },
        { use: 'clamav', with: { servers: [clamd.address] } },
      ],
    });
    relay = hosted;
    ok = hosted.sink;
    admin = relay.relay.adminAddress()!.port;
  });
  after(async () => {
    await relay?.stop();
    await Promise.all([ok?.close(), later?.close(), never?.close(), senderMx?.close(), clamd?.close()]);
  });

  it('refuses requests without the bearer token and answers /healthz with it', async () => {
    assert.equal((await adminGet(admin, '/metrics')).status, 401);
    assert.equal((await adminGet(admin, '/metrics', 'wrong-token-wrong-token')).status, 401);
    assert.deepEqual(await adminGet(admin, '/healthz', token).then((r) => [r.status, r.body]), [200, 'ok\n']);
    assert.equal((await adminGet(admin, '/nothing', token)).status, 404);
  });

  it('counts a known mix of traffic exactly, and promtool finds nothing wrong with the output', async () => {
    const send = (to: string, raw?: string) => sendMail({ port: relay.port, from: 'alice@sender.test', to, ...(raw ? { raw } : { subject: 'hello', text: 'plain text' }) });
    // accepted and delivered, twice
    assert.equal((await send('bob@example.com')).ok, true);
    assert.equal((await send('carol@example.com')).ok, true);
    // relay denied
    assert.match((await send('x@elsewhere.test')).response, /^550 5\.7\.1 /);
    // attachment blocked
    assert.match((await send('bob@example.com', withAttachment('exe', 'setup.exe', 'application/octet-stream', 'not really a program'))).response, /^550 5\.7\.1 Message refused/);
    // virus
    assert.match((await send('bob@example.com', withAttachment('virus', 'note.txt', 'text/plain', eicar()))).response, /^554 5\.7\.1 Message rejected: virus found/);
    // accepted, then deferred by the next hop
    assert.equal((await send('dave@deferred.test')).ok, true);
    // accepted, then bounced by the next hop: the DSN goes to sender.test
    assert.equal((await send('erin@bounced.test')).ok, true);

    await ok.waitFor(2, 15_000);
    await senderMx.waitFor(1, 15_000);
    await waitUntil(() => { const q = relay.relay.queue.stats(); return q.deferred === 1 && q.messages === 1 && q.sending === 0; }, 'the deferred message waiting for its retry', 15_000);
    let m = new Map<string, number>();
    for (let i = 0; i < 50; i++) {
      const r = await adminGet(admin, '/metrics', token);
      assert.equal(r.status, 200);
      m = parseMetrics(r.body);
      if (m.get(key('portcullis_connections_open', { listener: 'mx' })) === 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const v = (name: string, labels: Record<string, string> = {}) => m.get(key(name, labels));
    assert.equal(v('portcullis_connections_total', { listener: 'mx' }), 7);
    assert.equal(v('portcullis_connections_open', { listener: 'mx' }), 0);
    assert.equal(v('portcullis_transactions_total', { outcome: 'accepted' }), 4);
    assert.equal(v('portcullis_transactions_total', { outcome: 'rejected' }), 2);
    assert.equal(v('portcullis_transactions_total', { outcome: 'tempfailed' }), 0);
    assert.equal(v('portcullis_transactions_total', { outcome: 'abandoned' }), 1);
    assert.equal(v('portcullis_smtp_replies_total', { stage: 'rcpt', code: '550', enhanced: '5.7.1' }), 1);
    assert.equal(v('portcullis_smtp_replies_total', { stage: 'rcpt', code: '250', enhanced: '2.1.0' }), 6);
    assert.equal(v('portcullis_smtp_replies_total', { stage: 'data', code: '250', enhanced: '2.0.0' }), 4);
    assert.equal(v('portcullis_smtp_replies_total', { stage: 'data', code: '550', enhanced: '5.7.1' }), 1);
    assert.equal(v('portcullis_smtp_replies_total', { stage: 'data', code: '554', enhanced: '5.7.1' }), 1);
    assert.equal(v('portcullis_verdicts_total', { plugin: 'relay-policy', hook: 'rcpt', verdict: 'reject', reason: '5.7.1' }), 1);
    assert.equal(v('portcullis_verdicts_total', { plugin: 'relay-policy', hook: 'rcpt', verdict: 'accept', reason: '' }), 6);
    assert.equal(v('portcullis_verdicts_total', { plugin: 'attachments', hook: 'data', verdict: 'reject', reason: '5.7.1' }), 1);
    assert.equal(v('portcullis_verdicts_total', { plugin: 'clamav', hook: 'data', verdict: 'reject', reason: '5.7.1' }), 1);
    assert.equal(v('portcullis_message_size_bytes_count'), 4);
    assert.equal(v('portcullis_data_reply_seconds_count'), 6);
    assert.equal(v('portcullis_plugin_hook_duration_seconds_count', { plugin: 'relay-policy', hook: 'rcpt' }), 7);
    assert.equal(v('portcullis_plugin_hook_duration_seconds_count', { plugin: 'clamav', hook: 'data.raw' }), 6);
    assert.equal(v('portcullis_plugin_errors_total', { plugin: 'clamav', hook: 'data.raw', kind: 'error' }), undefined);
    // Delivery: two to example.com and the bounce to sender.test delivered; one deferred (451 4.3.2); one bounced (550 5.1.1).
    assert.equal(v('portcullis_deliveries_total', { outcome: 'delivered', class: '2.0' }), 3);
    assert.equal(v('portcullis_deliveries_total', { outcome: 'deferred', class: '4.3' }), 1);
    assert.equal(v('portcullis_deliveries_total', { outcome: 'bounced', class: '5.1' }), 1);
    assert.equal(v('portcullis_delivery_duration_seconds_count', { outcome: 'delivered', class: '2.0' }), 3);
    assert.equal(v('portcullis_delivery_duration_seconds_count', { outcome: 'deferred', class: '4.3' }), 1);
    assert.equal(v('portcullis_dsn_total', { kind: 'bounce' }), 1);
    assert.equal(v('portcullis_dsn_total', { kind: 'delay_warning' }), 0);
    assert.equal(v('portcullis_queue_messages', { state: 'deferred' }), 1);
    assert.equal(v('portcullis_queue_messages', { state: 'due' }), 0);
    assert.equal(v('portcullis_queue_messages', { state: 'held' }), 0);
    assert.equal(v('portcullis_spool_messages'), 1);
    assert.ok(v('portcullis_spool_bytes')! > 0);
    assert.ok(v('portcullis_queue_oldest_message_age_seconds')! > 0);
    assert.ok(v('portcullis_disk_free_bytes', { volume: 'spool' })! > 0);
    // The stock plugins' own metrics, through the plugin metrics API.
    assert.equal(v('portcullis_clamav_scans_total', { result: 'clean' }), 5);
    assert.equal(v('portcullis_clamav_scans_total', { result: 'infected' }), 1);
    assert.equal(v('portcullis_clamav_scans_total', { result: 'error' }), 0);
    assert.equal(v('portcullis_clamav_scan_duration_seconds_count'), 6);
    assert.equal(v('portcullis_attachments_findings_total', { kind: 'extension', action: 'block' }), 1);
    assert.equal(v('portcullis_attachments_findings_total', { kind: 'executable', action: 'block' }), 0);
    assert.equal(v('portcullis_attachments_parts_inspected_total'), 8);
    // No label anywhere carries an address.
    for (const k of m.keys()) assert.doesNotMatch(k, /127\.0\.0\.1|sender\.test|example\.com|@/, `label with an address: ${k}`);

    const body = (await adminGet(admin, '/metrics', token)).body;
    const check = promtoolCheckMetrics(body);
    assert.equal(check.status, 0, check.output);
    assert.equal(check.output.trim(), '');
  });
});
