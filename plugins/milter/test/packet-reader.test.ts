import { strict as assert } from 'node:assert';
import { encode, PacketReader, ProtocolError, type Packet } from '../src/protocol.js';

// The reader of the milter's answers: the same packets however the stream is cut, and linear in the
// bytes (a packet read a byte at a time is joined once, not once per byte).

const stream = Buffer.concat([
  encode('c'),
  encode('h', Buffer.from('X-Spam\0yes\0')),
  encode('b', Buffer.alloc(300, 0x61)),
  encode('a'),
  encode('y', '250 ok'),
  encode('r'),
]);

const shown = (ps: Packet[]) => ps.map((p) => `${p.cmd}:${p.data.toString('hex')}`);

function readAll(pieces: Buffer[], max = 1024 * 1024): Packet[] {
  const r = new PacketReader(max);
  return pieces.flatMap((p) => r.push(p));
}

describe('PacketReader', () => {
  const whole = shown(readAll([stream]));

  it('reads the packets of one piece', () => {
    assert.deepEqual(whole.map((p) => p.split(':')[0]), ['c', 'h', 'b', 'a', 'y', 'r']);
    assert.equal(readAll([stream])[2]!.data.length, 300);
  });

  it('gives the same packets for a cut at every byte, for every pair of cuts, and for a byte a piece', () => {
    for (let i = 0; i <= stream.length; i++) {
      assert.deepEqual(shown(readAll([stream.subarray(0, i), stream.subarray(i)])), whole, `cut at ${i}`);
    }
    for (let i = 0; i <= stream.length; i += 7) {
      for (let j = i; j <= stream.length; j += 3) {
        assert.deepEqual(shown(readAll([stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)])), whole, `cuts at ${i}, ${j}`);
      }
    }
    assert.deepEqual(shown(readAll([...stream].map((b) => Buffer.from([b])))), whole);
  });

  it('refuses a zero or an over-long length even when the length field arrives split', () => {
    for (const bad of [Buffer.from([0, 0, 0, 0, 0x63]), Buffer.from([0, 0x10, 0, 1, 0x62])]) {
      const r = new PacketReader(1024 * 1024);
      r.push(bad.subarray(0, 2));
      assert.throws(() => r.push(bad.subarray(2)), ProtocolError);
    }
  });

  it('joins a 1 MB packet read a byte a piece once (copies counted), not once per piece', () => {
    const big = encode('b', Buffer.alloc(1024 * 1024 - 1, 0x62));
    const concat = Buffer.concat;
    let copied = 0;
    Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
      const out = concat(list, total);
      copied += out.length;
      return out;
    }) as typeof Buffer.concat;
    let got: Packet[] = [];
    const t0 = process.hrtime.bigint();
    try {
      const r = new PacketReader(1024 * 1024);
      for (let i = 0; i < big.length; i++) got = got.concat(r.push(big.subarray(i, i + 1)));
    } finally {
      Buffer.concat = concat;
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.equal(got.length, 1);
    assert.equal(got[0]!.data.length, 1024 * 1024 - 1);
    // The length field once (4 bytes), then the packet once: a join per piece would copy about 550 GB.
    assert.ok(copied <= 2 * big.length, `copied ${copied} bytes for a packet of ${big.length}`);
    console.log(`      1 MB packet in ${big.length} one-byte pieces: ${copied} bytes copied, ${ms.toFixed(0)} ms`);
  });
});
