import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { CodecPool } from '../../src/codec/pool.ts';
import { RangeBuffers } from '../../src/repo/rangebuffers.ts';

/** Records what is lent; RangeBuffers needs nothing else of the pool. */
function lender() {
  const lent: Buffer[] = [];
  const codec = { lend: (b: Buffer) => (lent.push(b), b) } as unknown as CodecPool;
  return { codec, lent };
}

describe('RangeBuffers', () => {
  it('gives a buffer of the smallest size that holds the range, lent to the codec, and none past the largest', async () => {
    const { codec, lent } = lender();
    const rb = new RangeBuffers(codec, 1000, 2, 5000, 1);
    const a = await rb.take(10);
    const b = await rb.take(1000);
    const c = await rb.take(1001);
    assert.deepEqual([a!.length, b!.length, c!.length], [1000, 1000, 5000]);
    assert.ok(a!.buffer instanceof SharedArrayBuffer);
    assert.deepEqual(lent, [a, b, c]);
    assert.equal(await rb.take(5001), undefined);
  });

  it('waits while every buffer of a size is out, and reuses what is given back', async () => {
    const { codec, lent } = lender();
    const rb = new RangeBuffers(codec, 100, 1, 200, 1);
    const a = (await rb.take(50))!;
    let second: Buffer | undefined;
    const waiting = rb.take(60).then((b) => (second = b));
    const big = await rb.take(150); // the other size is not held up
    assert.equal(big!.length, 200);
    await new Promise((r) => setImmediate(r));
    assert.equal(second, undefined, 'no second small buffer beyond the bound');
    rb.give(a);
    await waiting;
    assert.equal(second, a, 'the buffer given back');
    assert.equal(lent.length, 2);
  });
});
