import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../src/config/load.js';
import { existingShards, orphanAssignment, shardDir, workerCount } from '../src/cluster/shards.js';
import { fanOut, type QueueTarget } from '../src/cluster/fan-out.js';
import type { ControlRequest, ControlResponse } from '../src/ops/control-server.js';

describe('worker mode: spool shards and fanned-out queue commands', () => {
  it('reads workers as 1 by default, a number, or auto as the available cores', () => {
    const base = { listen: [{ port: 2525 }] };
    assert.equal(workerCount(parseConfig(base)), 1);
    assert.equal(workerCount(parseConfig({ ...base, workers: 3 })), 3);
    assert.equal(workerCount(parseConfig({ ...base, workers: 'auto' })), os.availableParallelism());
    assert.throws(() => parseConfig({ ...base, workers: 0 }, 'relay.yaml'), /relay\.yaml: workers/);
  });

  it('finds w<i> shards, and the spool folder itself only when it holds messages', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'pc-shards-'));
    try {
      assert.deepEqual(existingShards(root), []);
      for (const w of ['w1', 'w2', 'w10', 'wx', 'w0']) mkdirSync(path.join(root, w));
      mkdirSync(path.join(root, 'seg'));
      assert.deepEqual(existingShards(root), [1, 2, 10]);
      writeFileSync(path.join(root, 'seg', '1.seg'), '');
      assert.deepEqual(existingShards(root), [0, 1, 2, 10]);
      assert.equal(shardDir(root, 0), root);
      assert.equal(shardDir(root, 2), path.join(root, 'w2'));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('gives every orphan shard to a live worker, round-robin, the same way every time', () => {
    assert.deepEqual([...orphanAssignment([0, 1, 2, 3, 4], 2)], [[1, [0, 4]], [2, [3]]]);
    assert.deepEqual([...orphanAssignment([1, 2], 4)], [[1, []], [2, []], [3, []], [4, []]]);
    assert.deepEqual([...orphanAssignment([1, 2, 3], 1)], [[1, [2, 3]]]);
  });

  const target = (shard: number, ids: string[], fail?: string): QueueTarget => ({
    shard,
    answer: async (req: ControlRequest): Promise<ControlResponse> => {
      if (fail) throw new Error(fail);
      if (req.cmd === 'list') return { ok: true, result: ids.map((id) => ({ id })) };
      if (req.cmd === 'flush') return { ok: true, result: { flushed: req.id ? (ids.includes(req.id) ? 1 : 0) : ids.length } };
      if (req.cmd === 'hold') return ids.includes(req.id) ? { ok: true, result: true } : { ok: false, error: `no such message, or it is being delivered right now: ${req.id}` };
      return { ok: false, error: 'unexpected' };
    },
  });

  it("lists the union with each row's shard, sums a flush, and finds a message in the shard that holds it", async () => {
    const targets = [target(1, ['A', 'B']), target(2, ['C'])];
    assert.deepEqual(await fanOut({ cmd: 'list' }, targets), { ok: true, result: [{ id: 'A', shard: 1 }, { id: 'B', shard: 1 }, { id: 'C', shard: 2 }] });
    assert.deepEqual(await fanOut({ cmd: 'flush' }, targets), { ok: true, result: { flushed: 3 } });
    assert.deepEqual(await fanOut({ cmd: 'flush', id: 'C' }, targets), { ok: true, result: { flushed: 1 } });
    assert.deepEqual(await fanOut({ cmd: 'hold', id: 'C' }, targets), { ok: true, result: true });
    assert.deepEqual(await fanOut({ cmd: 'hold', id: 'Z' }, targets), { ok: false, error: 'no such message, or it is being delivered right now: Z' });
  });

  it('refuses a list when one queue does not answer, rather than return a short one', async () => {
    const r = await fanOut({ cmd: 'list' }, [target(1, ['A']), target(2, [], 'IPC request control got no answer within 30000 ms')]);
    assert.deepEqual(r, { ok: false, error: 'not every worker answered: IPC request control got no answer within 30000 ms' });
  });
});
