import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RSPAMD_OFFLINE_DISABLED, writeRspamdConfig } from '../src/index.js';

/** What Debian's rspamadm reads from the config (no daemon started, nothing on the network). */
function rspamadm(dir: string, ...command: string[]): string {
  const vars = ['LOCAL_CONFDIR', 'DBDIR', 'RUNDIR', 'LOGDIR'].map((v, i) => `--var=${v}=${i === 0 ? dir : path.join(dir, ['', 'db', 'run', 'log'][i]!)}`);
  return execFileSync('rspamadm', [...vars, ...command, '-c', path.join(dir, 'rspamd.conf')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60_000 });
}

describe('writeRspamdConfig (the offline rspamd of the rspamd plugin tests and the benchmark)', function () {
  this.timeout(90_000);
  let dir: string;
  let args: string[];
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rspamd-config-'));
    args = writeRspamdConfig(dir, { port: 11999, socketPath: path.join(dir, 'rspamd.sock'), dnsPort: 5399, logLevel: 'info', workers: 1, options: 'filters = "regexp";' });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a config that rspamadm configtest passes', () => {
    assert.match(rspamadm(dir, 'configtest'), /syntax OK/);
  });

  it('binds one normal worker to the port and the socket, points DNS at the dead port, turns hyperscan and every network module off', () => {
    const dump = rspamadm(dir, 'configdump', 'worker', 'options', 'rbl');
    assert.match(dump, /bind_socket = "127\.0\.0\.1:11999";/);
    assert.match(dump, new RegExp(`bind_socket = "${path.join(dir, 'rspamd.sock').replace(/[.]/g, '\\.')} mode=0600";`));
    assert.match(dump, /\n\s*count = 1;/);
    assert.match(dump, /"127\.0\.0\.1:5399"/);
    assert.match(dump, /disable_hyperscan = true;/);
    assert.match(dump, /filters = "regexp";/);
    assert.match(dump, /control_socket = "";/);
    assert.match(dump.slice(dump.indexOf('*** Section rbl ***')), /^enabled = false;$/m);
    assert.deepEqual(readdirSync(path.join(dir, 'local.d')).filter((f) => f !== 'options.inc').sort(), RSPAMD_OFFLINE_DISABLED.map((m) => `${m}.conf`).sort());
  });

  it('gives the arguments that run rspamd in the foreground with every run-time folder inside the config folder', () => {
    assert.deepEqual(args, ['-f', '-u', 'root', '-g', 'root', '-c', path.join(dir, 'rspamd.conf'), '--var', `LOCAL_CONFDIR=${dir}`, '--var', `DBDIR=${dir}/db`, '--var', `RUNDIR=${dir}/run`, '--var', `LOGDIR=${dir}/log`]);
  });
});
