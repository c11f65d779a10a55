import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { peekWorkers } from '../src/cluster/config-peek.js';
import { primaryConfig } from '../src/cluster/primary.js';
import { parseConfig } from '../src/config/load.js';

describe('worker mode: what portcullis start reads before it decides to be a primary', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-peek-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const f = path.join(dir, name);
    writeFileSync(f, text);
    return f;
  };

  it('reads workers from YAML and JSON as written: a whole number above 1, or auto as the available cores', () => {
    assert.equal(peekWorkers(file('a.yaml', 'hostname: x\nworkers: 3\n')), 3);
    assert.equal(peekWorkers(file('b.json', '{"workers": 2}')), 2);
    assert.equal(peekWorkers(file('c.yaml', 'workers: auto\n')), Math.max(1, os.availableParallelism()));
  });

  it('gives 1 (the single-process start, which validates and reports everything) for anything else', () => {
    assert.equal(peekWorkers(path.join(dir, 'missing.yaml')), 1);
    assert.equal(peekWorkers(file('d.yaml', 'hostname: x\n')), 1);
    assert.equal(peekWorkers(file('e.yaml', 'workers: 1\n')), 1);
    assert.equal(peekWorkers(file('f.yaml', 'workers: "3"\n')), 1);
    assert.equal(peekWorkers(file('g.yaml', 'workers: 2.5\n')), 1);
    assert.equal(peekWorkers(file('h.yaml', 'workers: [2\n')), 1);
    assert.equal(peekWorkers(file('i.json', '{"workers": 2')), 1);
    assert.equal(peekWorkers(file('j.yaml', '- 1\n- 2\n')), 1);
  });

  it("hands the primary a plain-data part of the validated config that survives JSON (IPC) unchanged", () => {
    const c = parseConfig({ hostname: 'x', workers: 2, spool: { dir: 'sp' }, admin: { enabled: true, port: 9100 }, log: { level: 'warn', file: { path: 'log/relay.log' } }, shutdown: { drainTime: '5s' }, listen: [{ host: '127.0.0.1', port: 25, xclient: ['10.0.0.0/8'] }] });
    const p = primaryConfig(c);
    assert.deepEqual(JSON.parse(JSON.stringify(p)), p);
    assert.equal(p.workers, 2);
    assert.equal(p.shutdown.drainTime, 5000);
    assert.equal(p.admin.port, 9100);
    assert.equal(p.log.file?.path, 'log/relay.log');
    assert.equal(p.spool.dir, 'sp');
    assert.equal('listen' in p, false, 'no listener (it holds network lists, class instances) crosses to the primary');
  });
});
