import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compress, decompress, CODEC_NONE, CODEC_ZSTD } from '../../src/codec/compress.ts';
import { seal, unseal } from '../../src/codec/encrypt.ts';
import { makeSlot, newMasterKey, openSlot, splitMaster } from '../../src/codec/keys.ts';
import { BLAKE3_KEY_CONTEXT, blobIds, type IdHash } from '../../src/codec/hash.ts';
import { Zstd } from '../../src/codec/compress.ts';
import { ENVELOPE_OVERHEAD, openEnvelope, sealInto } from '../../src/codec/envelope.ts';
import { CodecPool } from '../../src/codec/pool.ts';
import { IntegrityError } from '../../src/util/errors.ts';

const meta = { id: 'x', created: 'now', host: 'h', user: 'u' };
const fastScrypt = { N: 1 << 10, r: 8, p: 1 };
/** Runs `f` with a two-worker pool (BLAKE3 ids, zstd level 3) and its id function, then closes the pool. */
async function withPool(f: (pool: CodecPool, idOf: (b: Uint8Array) => Buffer) => Promise<void>): Promise<void> {
  const key = splitMaster(newMasterKey());
  const pool = new CodecPool(key, 'blake3', 3, 2);
  try {
    await f(pool, blobIds('blake3', key.mac));
  } finally {
    await pool.close();
  }
}
/** `n` distinct 8 KiB pages of compressible text. */
const pages = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => Buffer.from(`page ${i} `.repeat(1024)).subarray(0, 8192));

describe('codecs', () => {
  it('compresses compressible data with zstd and stores random data as is', async () => {
    const text = Buffer.from('hello world '.repeat(10000));
    const c = await compress(text, 3);
    assert.equal(c.codec, CODEC_ZSTD);
    assert.ok(c.data.length < text.length / 10);
    assert.deepEqual(await decompress(c.codec, c.data), text);
    const rnd = randomBytes(100000);
    const r = await compress(rnd, 3);
    assert.equal(r.codec, CODEC_NONE);
  });

  it('rejects an unknown codec id', async () => {
    await assert.rejects(decompress(0x7f, Buffer.alloc(10)), IntegrityError);
  });

  it('seals with AES-256-GCM and detects any flipped byte or wrong context', () => {
    const key = randomBytes(32);
    const aad = Buffer.from('ctx');
    const sealed = seal(key, aad, Buffer.from('secret'));
    assert.equal(unseal(key, aad, sealed, 't').toString(), 'secret');
    for (let i = 0; i < sealed.length; i++) {
      const bad = Buffer.from(sealed);
      bad[i] ^= 1;
      assert.throws(() => unseal(key, aad, bad, 't'), IntegrityError);
    }
    assert.throws(() => unseal(key, Buffer.from('other'), sealed, 't'), IntegrityError);
  });

  it('blob envelopes bind the id: a blob cannot pass for another', async () => {
    const key = splitMaster(newMasterKey());
    const a = Buffer.from('a'.repeat(1000));
    const b = Buffer.from('b'.repeat(1000));
    const idOf = blobIds('blake3', key.mac);
    const ida = idOf(a);
    const idb = idOf(b);
    const z = new Zstd(3);
    const out = Buffer.alloc(a.length + ENVELOPE_OVERHEAD);
    const sa = out.subarray(0, sealInto(z, key.enc, ida, a, out, 0));
    assert.deepEqual(openEnvelope(z, key.enc, idOf, ida, sa, a.length, 'p'), a);
    assert.throws(() => openEnvelope(z, key.enc, idOf, idb, sa, a.length, 'p'), IntegrityError);
    for (const i of [0, 5, 20, sa.length - 1]) {
      const bad = Buffer.from(sa);
      bad[i] ^= 1;
      assert.throws(() => openEnvelope(z, key.enc, idOf, ida, bad, a.length, 'p'), IntegrityError);
    }
  });

  it('blob ids: keyed BLAKE3 (the reference vector) and HMAC-SHA-256, each bound to its key', () => {
    // BLAKE3's published keyed_hash vector for empty input under the test key.
    const { Blake3Hasher } = createRequire(import.meta.url)('@napi-rs/blake-hash') as typeof import('@napi-rs/blake-hash');
    const vector = Blake3Hasher.newKeyed(Buffer.from('whats the Elvish word for friend')).update(Buffer.alloc(0)).digest('hex');
    assert.equal(vector, '92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26');
    const mac = randomBytes(32);
    const data = randomBytes(70_000);
    const b3 = blobIds('blake3', mac);
    const bk = createHmac('sha256', mac).update(BLAKE3_KEY_CONTEXT).digest();
    assert.equal(b3(data).toString('hex'), Blake3Hasher.newKeyed(bk).update(data).digest('hex'));
    assert.ok(b3(data).equals(b3(Buffer.from(data))), 'the reused hasher starts afresh each time');
    assert.ok(blobIds('hmac-sha256', mac)(data).equals(createHmac('sha256', mac).update(data).digest()));
    assert.ok(!b3(data).equals(blobIds('blake3', randomBytes(32))(data)), 'another key, another id');
    // Views of shared memory (the codec pool's slabs) hash like ordinary buffers.
    const shared = Buffer.from(new SharedArrayBuffer(data.length + 10)).subarray(10);
    data.copy(shared);
    assert.ok(b3(shared).equals(b3(data)));
  });

  for (const idHash of ['blake3', 'hmac-sha256'] as IdHash[]) {
    it(`the worker pool seals and opens the same envelopes, and reports a bad blob without failing the others (${idHash} ids)`, async () => {
      const key = splitMaster(newMasterKey());
      const pool = new CodecPool(key, idHash, 3, 2);
      try {
        const plains = Array.from({ length: 50 }, (_, i) => (i % 2 ? randomBytes(70_000 + i) : Buffer.from(`text ${i} `.repeat(5000))));
        const idOf = blobIds(idHash, key.mac);
        const ids = plains.map((p) => idOf(p));
        // Ids computed on a worker (large inputs) and on this thread (small ones) agree.
        assert.ok((await pool.hash(plains[1])).equals(ids[1]));
        assert.ok((await pool.hash(Buffer.from('small'))).equals(idOf(Buffer.from('small'))));
        const sealed = await Promise.all(plains.map((p, i) => pool.seal(ids[i], p, (s) => Buffer.from(s))));
        sealed[7] = Buffer.from(sealed[7]);
        sealed[7][30] ^= 1;
        const opened = await Promise.allSettled(sealed.map((s, i) => pool.open(ids[i], s, plains[i].length, 'pack x')));
        opened.forEach((r, i) => {
          if (i === 7) assert.ok(r.status === 'rejected' && r.reason instanceof IntegrityError && /pack x/.test(r.reason.message));
          else assert.ok(r.status === 'fulfilled' && r.value.equals(plains[i]), `blob ${i}`);
        });
      } finally {
        await pool.close();
      }
    });
  }

  it('thousands of blobs queued in one turn (as a restore queues a range) each open once, to their own bytes', () =>
    withPool(async (pool, idOf) => {
      // 6000 distinct 8 KiB pages: more than a slab per batch, so most wait in the queue
      // while the workers are full, and the queue drops its sent slots many times over.
      const plains = pages(6000);
      const ids = plains.map((p) => idOf(p));
      const sealed = await Promise.all(plains.map((p, i) => pool.seal(ids[i], p, (s) => Buffer.from(s))));
      const opened = await Promise.all(sealed.map((s, i) => pool.open(ids[i], s, plains[i].length, `blob ${i}`)));
      let wrong = 0;
      for (const [i, o] of opened.entries()) if (!o.equals(plains[i])) wrong++;
      assert.equal(wrong, 0, 'every blob opens to its own plaintext');
    }));

  it('a codec worker that dies fails every job, in flight or queued, and every later one, with an error naming it', () =>
    withPool(async (pool, idOf) => {
      const plains = pages(3000);
      const jobs = plains.map((p) => pool.seal(idOf(p), p, (s) => s.length));
      // As an out-of-memory kill or a crash of the thread would: the worker is gone with jobs on it.
      const workers = (pool as unknown as { workers: { w: import('node:worker_threads').Worker }[] }).workers;
      await workers[0].w.terminate();
      const settled = await Promise.allSettled(jobs);
      const failed = settled.filter((r) => r.status === 'rejected');
      assert.ok(failed.length > 0, 'some jobs fail');
      for (const r of failed) assert.match(String((r as PromiseRejectedResult).reason), /codec worker .*exited/);
      await assert.rejects(pool.seal(idOf(plains[0]), plains[0], (s) => s.length), /codec worker .*exited/);
    }));

  it('reads inputs in lent buffers where they are: ids and blobs equal those of copied inputs, mixed in one batch', () =>
    withPool(async (pool, idOf) => {
      const a = pool.lend(Buffer.from(new SharedArrayBuffer(1 << 20)));
      const b = pool.lend(Buffer.from(new WebAssembly.Memory({ initial: 17, maximum: 17, shared: true }).buffer as unknown as SharedArrayBuffer, 4096, 1 << 20));
      randomBytes(1 << 20).copy(a);
      Buffer.from('compressible page '.repeat(60_000)).copy(b);
      // Views at odd offsets of two lent buffers, and plain buffers, all queued in one turn.
      const inputs = [a.subarray(17, 65_553), b.subarray(4096, 4096 + 65_536), Buffer.from(a.subarray(100_000, 170_000)), b.subarray(300_001, 400_000), a.subarray(900_000)];
      const got = await Promise.all(inputs.map((p) => pool.hashSeal(p, (id, sealed) => ({ id: Buffer.from(id), sealed: Buffer.from(sealed) }))));
      const hashed = await Promise.all(inputs.map((p) => pool.hash(p)));
      for (const [i, p] of inputs.entries()) {
        assert.ok(got[i].id.equals(idOf(p)), `hashSeal id of input ${i}`);
        assert.ok(hashed[i].equals(idOf(p)), `hash of input ${i}`);
        assert.ok((await pool.open(got[i].id, got[i].sealed, p.length, 'x')).equals(p), `blob ${i}`);
      }
      assert.throws(() => pool.lend(Buffer.alloc(10)), TypeError);
    }));

  for (const threads of [2, 0]) {
    it(`hashSeal gives the blob id with the sealed blob, at the level asked; openTo writes blobs into a file (${threads} worker threads)`, async () => {
      const key = splitMaster(newMasterKey());
      const pool = new CodecPool(key, 'blake3', 3, threads);
      const dir = mkdtempSync(join(tmpdir(), 'ferry-codec-'));
      try {
        const plains = Array.from({ length: 40 }, (_, i) => (i % 3 ? randomBytes(65_536) : Buffer.from(`page ${i} `.repeat(10_000).slice(0, 65_536))));
        const got = await Promise.all(plains.map((p, i) => pool.hashSeal(p, (id, sealed) => ({ id: Buffer.from(id), sealed: Buffer.from(sealed) }), i % 2 ? 1 : undefined)));
        got.forEach((g, i) => assert.ok(g.id.equals(blobIds('blake3', key.mac)(plains[i])), `id of blob ${i}`));
        // Adjacent blobs written through the workers (coalesced) make the file byte for byte.
        const path = join(dir, 'out');
        const fd = openSync(path, 'w');
        try {
          const n = await Promise.all(got.map((g, i) => pool.openTo(g.id, g.sealed, 65_536, 'pack x', fd, i * 65_536)));
          assert.equal(n.reduce((a, b) => a + b, 0), 40 * 65_536);
        } finally {
          closeSync(fd);
        }
        assert.ok(readFileSync(path).equals(Buffer.concat(plains)));
        // With an O_DIRECT descriptor too (where the filesystem has it): whole pages go direct,
        // the partial pages of odd-sized runs at odd positions through the page cache.
        const sizes = [65_536, 100_000, 4096, 70_001, 65_536, 200_000, 1];
        const odd = sizes.map((n) => randomBytes(n));
        const oddSealed = await Promise.all(odd.map((p) => pool.hashSeal(p, (id, sealed) => ({ id: Buffer.from(id), sealed: Buffer.from(sealed) }))));
        const path2 = join(dir, 'direct');
        const fd2 = openSync(path2, 'w');
        let direct: number | undefined;
        try {
          direct = openSync(path2, constants.O_WRONLY | constants.O_DIRECT);
        } catch {
          direct = undefined; // tmpfs and some overlays: the page cache only
        }
        try {
          let pos = 12_345;
          await Promise.all(
            oddSealed.map((g, i) => {
              const at = pos;
              pos += sizes[i];
              return pool.openTo(g.id, g.sealed, sizes[i], 'pack x', fd2, at, direct);
            }),
          );
        } finally {
          if (direct !== undefined) closeSync(direct);
          closeSync(fd2);
        }
        assert.ok(readFileSync(path2).subarray(12_345).equals(Buffer.concat(odd)));
        // A write that fails is an I/O error naming the cause, not a corruption report.
        const ro = openSync(path, 'r');
        try {
          await assert.rejects(pool.openTo(got[0].id, got[0].sealed, 65_536, 'pack x', ro, 0), (e: Error) => !(e instanceof IntegrityError) && /EBADF/.test(e.message));
        } finally {
          closeSync(ro);
        }
      } finally {
        await pool.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('key slots: a passphrase or key file opens the master key, a wrong one does not', async () => {
    const master = newMasterKey();
    const slot = await makeSlot(master, { kind: 'passphrase', passphrase: 'correct horse' }, meta, fastScrypt);
    assert.deepEqual(await openSlot(slot, { kind: 'passphrase', passphrase: 'correct horse' }), master);
    assert.equal(await openSlot(slot, { kind: 'passphrase', passphrase: 'wrong' }), undefined);
    const material = randomBytes(32);
    const kslot = await makeSlot(master, { kind: 'keyfile', material, path: 'k' }, meta);
    assert.deepEqual(await openSlot(kslot, { kind: 'keyfile', material, path: 'k' }), master);
    assert.equal(await openSlot(kslot, { kind: 'keyfile', material: randomBytes(32), path: 'k' }), undefined);
  });
});
