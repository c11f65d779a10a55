import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { loadConfigFile } from '@portcullis/core';
import { startTestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import attachments from '@portcullis/attachments';
import clamav from '@portcullis/clamav';

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const promtool = (...args: string[]) => spawnSync('promtool', args, { cwd: here, encoding: 'utf8' });

/** Every portcullis_* metric family an expression names (histogram series mapped to their family). */
function families(expr: string): string[] {
  return [...expr.matchAll(/\bportcullis_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}

function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve(body));
    }).on('error', reject);
  });
}

describe('examples/monitoring', function () {
  this.timeout(60_000);

  it('promtool accepts the alert rules and the scrape config', () => {
    const rules = promtool('check', 'rules', 'alerts.yml');
    assert.equal(rules.status, 0, rules.stdout + rules.stderr);
    assert.match(rules.stdout, /SUCCESS: 11 rules found/);
    const config = promtool('check', 'config', 'prometheus.yml');
    assert.equal(config.status, 0, config.stdout + config.stderr);
  });

  it('the alerts fire on the series they watch (promtool test rules)', () => {
    const r = promtool('test', 'rules', 'alerts.test.yml');
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('the dashboard and the alert rules only name metrics a relay with the stock plugins exports', async () => {
    const dashboard = JSON.parse(readFileSync(path.join(here, 'grafana-dashboard.json'), 'utf8')) as { panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }> };
    const rules = parseYaml(readFileSync(path.join(here, 'alerts.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
    const used = new Map<string, string>();
    for (const p of dashboard.panels) for (const t of p.targets ?? []) for (const f of families(t.expr)) used.set(f, `panel "${p.title}"`);
    for (const g of rules.groups) for (const r of g.rules) for (const f of families(r.expr)) used.set(f, `alert ${r.alert}`);
    assert.ok(used.size >= 25, `the dashboard covers the metrics (${used.size})`);
    const relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, attachments, clamav },
      config: {
        admin: { enabled: true, port: 0, readyTimeout: '500ms' },
        plugins: [
          { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: '127.0.0.1:9' } } } },
          { use: 'attachments', with: { action: 'block' } },
          { use: 'clamav', with: { servers: ['127.0.0.1:9'], connectTimeout: '200ms' } },
        ],
      },
    });
    try {
      const body = await scrape(relay.relay.adminAddress()!.port);
      const exported = new Set([...body.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
      const missing = [...used].filter(([f]) => !exported.has(f)).map(([f, where]) => `${f} (${where})`);
      assert.deepEqual(missing, []);
    } finally {
      await relay.stop();
    }
  });

  it('the example relay config is valid', () => {
    const { config } = loadConfigFile(path.join(here, 'portcullis.yaml'));
    assert.equal(config.admin.enabled, true);
    assert.equal(config.admin.host, '127.0.0.1');
  });
});
