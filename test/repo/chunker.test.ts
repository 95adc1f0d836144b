import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { FastCdc, FixedChunker, gearTable } from '../../src/repo/chunker.ts';

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
