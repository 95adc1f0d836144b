import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DEFAULT_CHUNKER, FastCdc, FixedChunker, gearTable, type ChunkerParams } from '../../src/repo/chunker.ts';
import { scannableBuffer } from '../../src/repo/gearscan.ts';

const params = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };
const gear = gearTable(Buffer.from('seed'));

function chunkAll(data: Buffer, sliceSizes: number[]): Buffer[] {
  const c = new FastCdc(params, gear);
  const out: Buffer[] = [];
  let pos = 0;
  let i = 0;
  while (pos < data.length) {
    const n = sliceSizes[i++ % sliceSizes.length];
    out.push(...c.push(data.subarray(pos, pos + n)));
    pos += n;
  }
  out.push(...c.finish());
  return out;
}

describe('FastCDC', () => {
  const data = randomBytes(8 << 20);

  it('cuts the same boundaries however the stream is sliced, and loses no byte', () => {
    const a = chunkAll(data, [1 << 20]);
    const b = chunkAll(data, [777, 65536, 3 << 20, 1]);
    assert.deepEqual(a.map((c) => c.length), b.map((c) => c.length));
    assert.deepEqual(Buffer.concat(a), data);
  });

  it('respects min and max, and averages near the target', () => {
    const chunks = chunkAll(data, [1 << 20]);
    for (const c of chunks.slice(0, -1)) {
      assert.ok(c.length >= params.min && c.length <= params.max, `chunk of ${c.length}`);
    }
    const avg = data.length / chunks.length;
    assert.ok(avg > params.avg / 2 && avg < params.avg * 2, `average ${avg}`);
  });

  it('an insertion near the start changes only nearby chunks', () => {
    const before = chunkAll(data, [1 << 20]);
    const edited = Buffer.concat([data.subarray(0, 1000), Buffer.from('inserted!'), data.subarray(1000)]);
    const after = chunkAll(edited, [1 << 20]);
    const set = new Set(before.map((c) => c.toString('base64')));
    const shared = after.filter((c) => set.has(c.toString('base64'))).length;
    assert.ok(shared >= after.length - 3, `${shared} of ${after.length} chunks shared`);
  });

  it('scans buffers in WebAssembly memory in place with exactly the boundaries of the JavaScript scan', () => {
    const scannable = scannableBuffer(6 << 20);
    /** Boundaries from split() over `buf` in slices of `slice` bytes, the way the backup reads. */
    const cuts = (p: ChunkerParams, g: Uint32Array, buf: Buffer, slice: number): number[] => {
      const c = new FastCdc(p, g);
      const lens: number[] = [];
      let carry = Buffer.alloc(0);
      for (let pos = 0; pos < buf.length; pos += slice) {
        const part = Buffer.concat([carry, buf.subarray(pos, pos + slice)]);
        // The same bytes once in an ordinary buffer and once in a scannable one (one for the
        // whole test, so it sees both gear tables), at an odd offset.
        const inWasm = scannable.subarray(3, 3 + part.length);
        part.copy(inWasm);
        const eof = pos + slice >= buf.length;
        const js = c.split(part, eof);
        const wasm = c.split(inWasm, eof);
        assert.deepEqual(wasm.chunks.map((x) => x.length), js.chunks.map((x) => x.length));
        assert.equal(wasm.rest.length, js.rest.length);
        lens.push(...js.chunks.map((x) => x.length));
        carry = Buffer.from(js.rest);
      }
      return lens;
    };
    const text = Buffer.from(Array.from({ length: 60_000 }, (_, i) => `line ${i} of a log, status=${i % 7}\n`).join(''));
    const inputs = [data.subarray(0, 3 << 20), text, Buffer.alloc(1 << 20), Buffer.concat([Buffer.alloc(300_000, 7), data.subarray(0, 900_000)])];
    const other = gearTable(Buffer.from('another repository'));
    for (const p of [params, DEFAULT_CHUNKER, { min: 64, avg: 256, max: 1024 }]) {
      for (const input of inputs) {
        // Two gear tables in turn: a memory holding the other repository's table gets this one.
        const a = cuts(p, gear, input, 700_001);
        assert.ok(a.length > 0);
        cuts(p, other, input, 700_001);
        assert.deepEqual(cuts(p, gear, input, 1 << 20).reduce((x, y) => x + y, 0), a.reduce((x, y) => x + y, 0));
      }
    }
  });

  it('different seeds cut different boundaries', () => {
    const other = new FastCdc(params, gearTable(Buffer.from('other')));
    const a = chunkAll(data, [1 << 20]).map((c) => c.length);
    const b = [...other.push(data), ...other.finish()].map((c) => c.length);
    assert.notDeepEqual(a, b);
  });
});

describe('FixedChunker', () => {
  it('cuts aligned fixed-size chunks with a short tail', () => {
    const c = new FixedChunker(8192);
    const data = randomBytes(8192 * 3 + 100);
    const out = [...c.push(data.subarray(0, 5000)), ...c.push(data.subarray(5000)), ...c.finish()];
    assert.deepEqual(out.map((x) => x.length), [8192, 8192, 8192, 100]);
    assert.deepEqual(Buffer.concat(out), data);
  });
});
