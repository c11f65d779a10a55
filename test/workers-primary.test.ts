import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureServer, freePort, jsonLogLines, pollUntil, RelayProcess, runCli, sendMail } from '@portcullis/testkit';




/**
 * The worker mode's primary validates the config (plugins imported, options checked, setup run) in a
 * short-lived child process and imports no plugin itself (packages/cli/src/validate-apart.ts): it
 * holds the sockets, admin, control and the log stream only, so it stays small.
 */
describe('workers: 2: the primary validates the config apart and loads no plugin', function () {
  this.timeout(180_000);
  let dir: string;
  let sink: CaptureServer;
  let relay: RelayProcess | undefined;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-primary-'));
    sink = await CaptureServer.start();
    // A plugin with a side effect at import: a file named after the pid of the process that imported it.
    writeFileSync(
      path.join(dir, 'marker-plugin.mjs'),
      "import { writeFileSync } from 'node:fs';\nimport path from 'node:path';\nwriteFileSync(path.join(process.env.MARKER_DIR, `imported-by-${process.pid}`), '');\nexport default { kind: 'portcullis-plugin', name: 'marker', setup: () => ({}) };\n",
    );
  });
  afterEach(async () => {
    await relay?.stop();
    relay = undefined;
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const config = (port: number, o: { workers?: number; tls?: string; hostname?: string } = {}) => ({
    hostname: o.hostname ?? 'relay.test',
    listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }],
    spool: { dir: path.join(dir, 'spool') },
    log: { level: 'info' },
    workers: o.workers ?? 2,
    plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: o.tls ?? 'none' } }, trustedNetworks: ['127.0.0.0/8'] } }, { use: './marker-plugin.mjs' }],
  });
  const markers = () => readdirSync(dir).flatMap((f) => (/^imported-by-(\d+)$/.exec(f) ? [Number(f.slice(12))] : []));

  it('imports the plugins in a validation child and in each worker, never in the primary, and delivers through the workers', async () => {
    const port = await freePort();
    const file = RelayProcess.write(dir, config(port));
    relay = new RelayProcess(file, port, { logFile: path.join(dir, 'relay.log'), env: { MARKER_DIR: dir } });
    await relay.start();
    assert.ok(await pollUntil(() => jsonLogLines(relay!.logFile).some((l) => l['msg'] === 'ready: every worker is listening'), 60_000), readFileSync(relay.logFile, 'utf8').slice(-3000));
    const primary = relay.pid;
    const workers = jsonLogLines(relay.logFile).find((l) => l['msg'] === 'ready: every worker is listening')!['pids'] as number[];
    assert.equal(workers.length, 2);
    const seen = markers();
    assert.ok(!seen.includes(primary), `the primary (pid ${primary}) imported no plugin; importers: ${seen.join(', ')}`);
    for (const w of workers) assert.ok(seen.includes(w), `worker ${w} imported the plugin`);
    const apart = seen.filter((p) => p !== primary && !workers.includes(p));
    assert.equal(apart.length, 1, `exactly one other process (the validation child) imported it: ${seen.join(', ')}`);
    // That child is gone: it ran the check and exited.
    assert.throws(() => process.kill(apart[0]!, 0), /ESRCH/);
    assert.equal((await sendMail({ port, from: 'a@sender.test', to: ['b@example.com'], subject: 'through a worker' })).ok, true);
    await sink.waitFor(1, 20_000);

    // A reload validates apart again: one more importer, and still not the primary.
    const reloaded = runCli(['reload', '--config', file], { MARKER_DIR: dir });
    assert.equal(reloaded.code, 0, reloaded.stderr);
    assert.match(reloaded.stdout, /configuration reloaded; new sessions use plugins: relay-policy, marker/);
    const after = markers();
    assert.ok(!after.includes(primary), 'the primary imported no plugin at the reload either');
    assert.ok(after.length >= seen.length + 1, `the reload's check ran in a new child: ${after.join(', ')}`);
  });

  it('refuses to start with a bad plugin option, printing the same file, key and exit code 78 as a single-process start, and forks no worker', async () => {
    const port = await freePort();
    const file = RelayProcess.write(dir, config(port, { tls: 'sometimes' }));
    const many = runCli(['start', '--config', file], { MARKER_DIR: dir });
    writeFileSync(file, JSON.stringify(config(port, { tls: 'sometimes', workers: 1 }), null, 2));
    const one = runCli(['start', '--config', file], { MARKER_DIR: dir });
    assert.equal(many.code, 78, many.stderr);
    assert.equal(one.code, 78, one.stderr);
    const line = many.stderr.split('\n')[0]!;
    assert.ok(line.startsWith(`${file}: plugins[0].with.domains.example.com.tls: `), line);
    // Same lines as one process prints (`workers: 1` is in the other file, which is not in any message).
    assert.equal(many.stderr, one.stderr);
    assert.match(many.stderr, /portcullis: 1 problem in the configuration; nothing was started/);
    assert.ok(!many.stdout.includes('"msg":"ready'), many.stdout);
  });

  it('refuses to start with a bad core key or a bad workers value, naming the file and key, exit code 78, as one process would', async () => {
    const port = await freePort();
    const file = path.join(dir, 'portcullis.json');
    for (const [change, key] of [[{ spool: { dir: path.join(dir, 'spool'), segmentSize: 'huge' } }, 'spool.segmentSize'], [{ workers: 1000 }, 'workers']] as const) {
      writeFileSync(file, JSON.stringify({ ...config(port), ...change }, null, 2));
      const r = runCli(['start', '--config', file], { MARKER_DIR: dir });
      assert.equal(r.code, 78, r.stderr);
      assert.ok(r.stderr.includes(`${file}: ${key}: `), r.stderr);
      assert.match(r.stderr, /in the configuration; nothing was started\n$/);
    }
    assert.ok(markers().length > 0, 'the plugins were still checked (their options are reported with the core keys)');
  });

  it('refuses a reload with a bad plugin option, naming the file and key; every worker keeps the running configuration', async () => {
    const port = await freePort();
    const file = RelayProcess.write(dir, config(port));
    relay = new RelayProcess(file, port, { logFile: path.join(dir, 'relay.log'), env: { MARKER_DIR: dir } });
    await relay.start();
    assert.ok(await pollUntil(() => jsonLogLines(relay!.logFile).some((l) => l['msg'] === 'ready: every worker is listening'), 60_000));
    writeFileSync(file, JSON.stringify(config(port, { tls: 'sometimes', hostname: 'changed.test' }), null, 2));
    const r = runCli(['reload', '--config', file]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /^portcullis reload: the running configuration is kept:\n/);
    assert.ok(r.stderr.includes(`${file}: plugins[0].with.domains.example.com.tls: `), r.stderr);
    // SIGHUP is refused the same way, and logged.
    process.kill(relay.pid, 'SIGHUP');
    assert.ok(await pollUntil(() => jsonLogLines(relay!.logFile).some((l) => String(l['msg']).startsWith('reload refused: ') && String(l['msg']).includes('plugins[0].with.domains.example.com.tls')), 30_000));
    assert.ok(!jsonLogLines(relay.logFile).some((l) => l['msg'] === 'configuration reloaded: new sessions use it'), 'no worker applied it');
    // Every worker still runs the old config: messages on many connections carry the old hostname.
    for (let i = 0; i < 6; i++) assert.equal((await sendMail({ port, from: 'a@sender.test', to: ['b@example.com'], subject: `kept ${i}` })).ok, true);
    await sink.waitFor(6, 20_000);
    for (const m of sink.messages) assert.match(m.raw.toString('latin1'), /by relay\.test/);
  });
});
