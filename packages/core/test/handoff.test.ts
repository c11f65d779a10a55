import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { ConnectionHandoff } from '../src/cluster/handoff.js';
import { IpcChannel } from '../src/cluster/ipc-channel.js';
import { ClusterStateHost } from '../src/cluster/state-host.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** A real forked child (fixtures/handoff-child.ts) playing worker 1, attached to the state host as a worker is. */
async function startWorker(state: ClusterStateHost): Promise<ChildProcess> {
  const child = fork(path.join(here, 'fixtures/handoff-child.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`child exited ${code} before ready`)));
    child.on('message', function ready(m) {
      if ((m as { ready?: boolean }).ready) child.off('message', ready), resolve();
    });
  });
  state.attach(new IpcChannel(child as unknown as ConstructorParameters<typeof IpcChannel>[0], { timeoutMs: 2000 }), 1);
  return child;
}

/** Connects from `localAddress` and reads the first line the worker writes; the socket stays open. */
function greet(port: number, localAddress: string): Promise<{ line: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no greeting within 5 s (got ${JSON.stringify(buf)})`)), 5000);
    socket.on('error', reject);
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      const i = buf.indexOf('\r\n');
      if (i >= 0) clearTimeout(timer), resolve({ line: buf.slice(0, i), socket });
    });
  });
}

const closed = (s: net.Socket) => new Promise<void>((r) => (s.destroyed ? r() : (s.once('close', () => r()), s.end())));

// Both accept paths of the worker mode's primary: Node's private accept hook (raw handles) and the
// public path (a paused net.Socket) that serves where the hook is missing. The slot is counted by
// the primary and the verdict travels with the socket; a worker's release frees it.
for (const rawAccept of [true, false]) {
  describe(`connection handoff to a real forked worker (${rawAccept ? "Node's accept hook" : 'public accept path'})`, function () {
    this.timeout(20_000);
    let state: ClusterStateHost;
    let child: ChildProcess;
    let handoff: ConnectionHandoff;
    let port: number;
    const came = rawAccept ? 'handle' : 'socket';
    before(async () => {
      state = new ClusterStateHost();
      child = await startWorker(state);
      handoff = new ConnectionHandoff({
        listeners: [{ index: 0, host: '127.0.0.1', port: 0 }],
        state,
        limit: () => 1,
        targets: () => [{ index: 1, worker: child }],
        log: pino({ level: 'silent' }),
        rawAccept,
      });
      port = (await handoff.open()).get(0)!;
    });
    after(() => {
      handoff.close();
      child.kill();
    });

    it('hands the socket with the verdict: a limit of 1 per address grants one, refuses the next, and counts addresses apart', async () => {
      const a = await greet(port, '127.0.0.1');
      assert.equal(a.line, `220 listener=0 token=granted peer=127.0.0.1 came-as=${came}`);
      assert.equal(state.handedTo(1), 1);
      const b = await greet(port, '127.0.0.1');
      assert.equal(b.line, `220 listener=0 token=refused peer=127.0.0.1 came-as=${came}`);
      const c = await greet(port, '127.0.0.2');
      assert.equal(c.line, `220 listener=0 token=granted peer=127.0.0.2 came-as=${came}`);
      assert.equal(state.handedTo(1), 2, 'a refusal holds no slot');
      await Promise.all([a, b, c].map((x) => closed(x.socket)));
    });

    it("frees the slot with the worker's release: the same address is granted again", async () => {
      const deadline = Date.now() + 5000;
      while (state.handedTo(1) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(state.handedTo(1), 0);
      const a = await greet(port, '127.0.0.1');
      assert.equal(a.line, `220 listener=0 token=granted peer=127.0.0.1 came-as=${came}`);
      await closed(a.socket);
    });
  });
}
