/**
 * The storage conformance suite: the guarantees written on `Storage` in
 * src/storage/types.ts, checked against any backend or wrapper stack.
 * Every backend test file runs it; users can run it against their own bucket.
 *
 * Each test uses its own key prefix, so one storage instance serves the suite.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AlreadyExistsError, NotFoundError, StorageError } from '../../src/util/errors.ts';
import { listAll, type Storage } from '../../src/storage/types.ts';

export interface StorageFixture {
  storage: Storage;
  cleanup: () => Promise<void>;
}

const MiB = 1024 * 1024;

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return Buffer.concat(chunks);
}

/** Runs `fn` over `items` with at most `n` in flight. */
async function parallel<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

async function listKeys(storage: Storage, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of listAll(storage, prefix)) keys.push(o.key);
  return keys.sort();
}

export function storageConformance(name: string, makeStorage: () => Promise<StorageFixture>): void {
  describe(`storage conformance: ${name}`, () => {
    let storage: Storage;
    let fixture: StorageFixture | undefined;

    before(async () => {
      fixture = await makeStorage();
      storage = fixture.storage;
    });
    after(async () => {
      await fixture?.storage.close();
      await fixture?.cleanup();
    });

    it('round-trips small, empty and multi-MiB objects', async () => {
      const big = randomBytes(5 * MiB + 123);
      const cases: Array<[string, Buffer]> = [
        ['rt/small', Buffer.from('hello, ferry')],
        ['rt/empty', Buffer.alloc(0)],
        ['rt/nested/deeper/big', big],
      ];
      for (const [key, data] of cases) await storage.put(key, data);
      for (const [key, data] of cases) {
        const got = await storage.get(key);
        assert.equal(got.length, data.length, key);
        assert.ok(got.equals(data), `${key} differs`);
        assert.equal((await storage.stat(key))?.size, data.length);
      }
    });

    it('reads byte ranges: offset, offset+length, negative suffix, clamped ends', async () => {
      const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
      await storage.put('range/obj', data);
      const cases: Array<[{ offset?: number; length?: number }, Buffer]> = [
        [{ offset: 0 }, data],
        [{ offset: 10 }, data.subarray(10)],
        [{ offset: 10, length: 20 }, data.subarray(10, 30)],
        [{ length: 5 }, data.subarray(0, 5)],
        [{ offset: -100 }, data.subarray(900)],
        [{ offset: -100, length: 10 }, data.subarray(900, 910)],
        [{ offset: 990, length: 50 }, data.subarray(990)],
        [{ offset: -5000 }, data],
        [{ offset: 999 }, data.subarray(999)],
        [{ offset: 1000 }, Buffer.alloc(0)],
        [{ offset: 5000 }, Buffer.alloc(0)],
        [{ offset: 3, length: 0 }, Buffer.alloc(0)],
      ];
      for (const [opts, want] of cases) {
        const got = await storage.get('range/obj', opts);
        assert.ok(got.equals(want), `range ${JSON.stringify(opts)}: got ${got.length} bytes, want ${want.length}`);
      }
      await storage.put('range/empty', Buffer.alloc(0));
      for (const opts of [{ offset: 0 }, { offset: 3 }, { offset: -3 }, { offset: 0, length: 4 }]) {
        assert.equal((await storage.get('range/empty', opts)).length, 0, JSON.stringify(opts));
      }
      await assert.rejects(storage.get('range/missing', { offset: 2, length: 3 }), NotFoundError);
    });

    it('reads ranges of immutable objects (kept open by fs) concurrently, and not after delete', async () => {
      const objs = Array.from({ length: 40 }, (_, k) => Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7 + k) % 253)));
      await Promise.all(objs.map((d, k) => storage.put(`imm/o${k}`, d)));
      // More objects than fs keeps open, read in parallel twice over: eviction under use.
      for (let round = 0; round < 2; round++) {
        await Promise.all(
          objs.map(async (d, k) => {
            const got = await storage.get(`imm/o${k}`, { offset: 100 + k, length: 500, immutable: true });
            assert.ok(got.equals(d.subarray(100 + k, 600 + k)), `imm/o${k}`);
          }),
        );
      }
      assert.ok((await storage.get('imm/o0', { offset: -10, immutable: true })).equals(objs[0].subarray(2990)));
      await storage.delete('imm/o1');
      await assert.rejects(storage.get('imm/o1', { offset: 0, length: 5, immutable: true }), NotFoundError);
      await assert.rejects(storage.get('imm/none', { offset: 0, length: 5, immutable: true }), NotFoundError);
    });

    it('reads a range given a buffer to read into (a hint): the bytes returned are the range', async () => {
      const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 13) % 251));
      await storage.put('into/obj', data);
      const into = Buffer.from(new SharedArrayBuffer(2048)).fill(0xee);
      const got = await storage.get('into/obj', { offset: 1000, length: 1500, immutable: true, into });
      assert.ok(got.equals(data.subarray(1000, 2500)));
      // Too small to hold the range: a buffer of the backend's own, and `into` left alone.
      const small = Buffer.alloc(100, 0xee);
      assert.ok((await storage.get('into/obj', { offset: 0, length: 1500, into: small })).equals(data.subarray(0, 1500)));
      assert.ok(small.equals(Buffer.alloc(100, 0xee)));
      // Past the end: only what the object holds.
      assert.ok((await storage.get('into/obj', { offset: 4500, length: 1500, into })).equals(data.subarray(4500)));
    });

    it('stats existing and missing objects', async () => {
      const t0 = Date.now();
      await storage.put('stat/obj', Buffer.alloc(4321, 7));
      const info = await storage.stat('stat/obj');
      assert.ok(info);
      assert.equal(info.key, 'stat/obj');
      assert.equal(info.size, 4321);
      // Second-granular servers round mtime down; allow generous skew either way.
      assert.ok(Math.abs(info.mtime - t0) < 10 * 60_000, `mtime ${info.mtime} far from now ${t0}`);
      assert.equal(await storage.stat('stat/missing'), undefined);
      assert.equal(await storage.stat('stat'), undefined, 'a prefix of keys is not an object');
    });

    it('rejects a missing key with NotFoundError', async () => {
      await assert.rejects(storage.get('missing/x'), NotFoundError);
      await assert.rejects(storage.getStream('missing/x'), NotFoundError);
      await assert.rejects(storage.get('missing'), NotFoundError);
    });

    it('streams an object out with getStream', async () => {
      const data = randomBytes(3 * MiB + 17);
      await storage.put('gs/obj', data);
      assert.ok((await readAll(await storage.getStream('gs/obj'))).equals(data));
    });

    it('lists by string prefix', async () => {
      const keys = ['ls/a/1', 'ls/a/2', 'ls/ab/1', 'ls/ac', 'ls/b/1', 'ls/b/c/d/e'];
      for (const k of keys) await storage.put(k, Buffer.from(k));
      assert.deepEqual(await listKeys(storage, 'ls/'), keys);
      assert.deepEqual(await listKeys(storage, 'ls/a'), ['ls/a/1', 'ls/a/2', 'ls/ab/1', 'ls/ac']);
      assert.deepEqual(await listKeys(storage, 'ls/a/'), ['ls/a/1', 'ls/a/2']);
      assert.deepEqual(await listKeys(storage, 'ls/ab'), ['ls/ab/1']);
      assert.deepEqual(await listKeys(storage, 'ls/b/c'), ['ls/b/c/d/e']);
      assert.deepEqual(await listKeys(storage, 'ls/zz'), []);
      assert.deepEqual(await listKeys(storage, 'no-such-prefix/'), []);
      const page = await storage.listPage('ls/b/');
      assert.deepEqual(
        page.objects.map((o) => [o.key, o.size]).sort(),
        [
          ['ls/b/1', 6],
          ['ls/b/c/d/e', 10],
        ],
      );
      assert.equal(page.cursor, undefined);
    });

    it('pages through 2500 keys, each exactly once', async () => {
      const keys = Array.from({ length: 2500 }, (_, i) => `pg/k${String(i).padStart(5, '0')}`);
      await parallel(keys, 32, (k) => storage.put(k, Buffer.from(k)));
      const seen = new Map<string, number>();
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await storage.listPage('pg/', cursor, 1000);
        assert.ok(page.objects.length <= 1000, `page of ${page.objects.length}`);
        for (const o of page.objects) seen.set(o.key, (seen.get(o.key) ?? 0) + 1);
        cursor = page.cursor;
        pages++;
        assert.ok(pages < 20, 'listing does not end');
      } while (cursor !== undefined);
      assert.ok(pages >= 3, `only ${pages} pages`);
      assert.equal(seen.size, 2500);
      assert.deepEqual([...seen.values()].filter((n) => n !== 1), []);
      assert.deepEqual([...seen.keys()].sort(), keys);
      assert.equal((await listKeys(storage, 'pg/k01')).length, 1000);
    });

    it('pages a nested tree with small pages', async () => {
      const keys: string[] = [];
      for (let d = 0; d < 6; d++) for (let n = 0; n < 5; n++) keys.push(`tree/d${d}/n${n}`);
      await parallel(keys, 16, (k) => storage.put(k, Buffer.from(k)));
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await storage.listPage('tree/', cursor, 7);
        assert.ok(page.objects.length <= 7);
        seen.push(...page.objects.map((o) => o.key));
        cursor = page.cursor;
      } while (cursor !== undefined);
      assert.deepEqual(seen.sort(), keys.sort());
    });

    it('deletes idempotently', async () => {
      await storage.put('del/obj', Buffer.from('x'));
      await storage.delete('del/obj');
      assert.equal(await storage.stat('del/obj'), undefined);
      await assert.rejects(storage.get('del/obj'), NotFoundError);
      await storage.delete('del/obj');
      await storage.delete('del/never-existed');
      await storage.delete('del-nowhere/a/b/c');
      assert.deepEqual(await listKeys(storage, 'del/'), []);
    });

    it('honours ifNoneMatch for a key that already exists', async () => {
      await storage.put('inm/obj', Buffer.from('first'), { ifNoneMatch: true });
      await assert.rejects(storage.put('inm/obj', Buffer.from('second'), { ifNoneMatch: true }), AlreadyExistsError);
      await assert.rejects(storage.putStream('inm/obj', Readable.from([Buffer.from('third')]), { ifNoneMatch: true }), AlreadyExistsError);
      assert.equal((await storage.get('inm/obj')).toString(), 'first');
      await storage.putStream('inm/stream', Readable.from([Buffer.from('s')]), { ifNoneMatch: true });
      assert.equal((await storage.get('inm/stream')).toString(), 's');
    });

    it('lets exactly one of concurrent ifNoneMatch puts win (when conditionalPut)', async (t) => {
      if (!storage.capabilities.conditionalPut) {
        t.diagnostic('conditionalPut not declared: ifNoneMatch is best-effort, race not checked');
        return;
      }
      const bodies = Array.from({ length: 8 }, (_, i) => Buffer.from(`contender ${i} `.repeat(1000)));
      const results = await Promise.allSettled(bodies.map((b) => storage.put('race/lock', b, { ifNoneMatch: true })));
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      assert.equal(won.length, 1, `winners: ${won.join(',')}`);
      for (const r of results) {
        if (r.status === 'rejected') assert.ok(r.reason instanceof AlreadyExistsError, String(r.reason));
      }
      assert.ok((await storage.get('race/lock')).equals(bodies[won[0]]));
    });

    it('replaces objects atomically (when atomicReplace)', async (t) => {
      await storage.put('ow/obj', Buffer.from('old'));
      await storage.put('ow/obj', Buffer.from('new and longer'));
      assert.equal((await storage.get('ow/obj')).toString(), 'new and longer');
      assert.equal((await storage.stat('ow/obj'))?.size, 14);
      if (!storage.capabilities.atomicReplace) {
        t.diagnostic('atomicReplace not declared: concurrent readers not checked');
        return;
      }
      const a = Buffer.alloc(MiB, 'a');
      const b = Buffer.alloc(MiB / 2, 'b');
      await storage.put('ow/hot', a);
      let writing = true;
      const writer = (async () => {
        for (let i = 0; i < 10; i++) await storage.put('ow/hot', i % 2 ? a : b);
        writing = false;
      })();
      let reads = 0;
      while (writing) {
        const got = await storage.get('ow/hot');
        assert.ok(got.equals(a) || got.equals(b), `reader saw a mix of ${got.length} bytes`);
        reads++;
      }
      await writer;
      assert.ok(reads > 0);
    });

    it('round-trips a 40 MiB putStream (multipart on S3)', async () => {
      const hash = createHash('sha256');
      const chunkSizes = [1, 65_536, MiB, 3 * MiB + 7];
      let total = 0;
      const target = 40 * MiB + 5;
      const source = Readable.from(
        (function* () {
          for (let i = 0; total < target; i++) {
            const n = Math.min(chunkSizes[i % chunkSizes.length], target - total);
            const chunk = randomBytes(n);
            hash.update(chunk);
            total += n;
            yield chunk;
          }
        })(),
      );
      await storage.putStream('ps/big', source);
      const want = hash.digest('hex');
      assert.equal((await storage.stat('ps/big'))?.size, target);
      assert.equal(sha256(await storage.get('ps/big')), want);
      const streamed = createHash('sha256');
      for await (const c of await storage.getStream('ps/big')) streamed.update(c as Buffer);
      assert.equal(streamed.digest('hex'), want);
      const tail = await storage.get('ps/big', { offset: -10 });
      assert.equal(tail.length, 10);
      await storage.putStream('ps/empty', Readable.from([]));
      assert.equal((await storage.get('ps/empty')).length, 0);
    });

    it('accepts keys with unicode and spaces', async () => {
      const keys = ['uni/日本語/ファイル', 'uni/with space/and  two', 'uni/émoji 🚀.bin', 'uni/a+b=c&d%20e'];
      for (const k of keys) await storage.put(k, Buffer.from(k));
      for (const k of keys) assert.equal((await storage.get(k)).toString(), k);
      for (const k of keys) assert.equal((await storage.stat(k))?.size, Buffer.byteLength(k));
      assert.deepEqual(await listKeys(storage, 'uni/'), [...keys].sort());
      assert.deepEqual(await listKeys(storage, 'uni/日本'), ['uni/日本語/ファイル']);
      for (const k of keys) await storage.delete(k);
      assert.deepEqual(await listKeys(storage, 'uni/'), []);
    });

    it('rejects invalid keys and prefixes', async () => {
      const invalid = (e: unknown): boolean => e instanceof StorageError && !(e instanceof NotFoundError) && !e.transient;
      for (const key of ['', '/abs', 'a/../b', '..', 'a//b', 'a/', './a', 'a/./b']) {
        await assert.rejects(storage.put(key, Buffer.from('x')), invalid, `put ${JSON.stringify(key)}`);
        await assert.rejects(storage.get(key), invalid, `get ${JSON.stringify(key)}`);
        await assert.rejects(storage.stat(key), invalid, `stat ${JSON.stringify(key)}`);
        await assert.rejects(storage.delete(key), invalid, `delete ${JSON.stringify(key)}`);
      }
      for (const prefix of ['/abs/', '../', 'a//']) {
        await assert.rejects(storage.listPage(prefix), invalid, `listPage ${JSON.stringify(prefix)}`);
      }
      await storage.put('badrange/obj', Buffer.from('0123456789'));
      await assert.rejects(storage.get('badrange/obj', { offset: 1.5 }), invalid);
      await assert.rejects(storage.get('badrange/obj', { length: -1 }), invalid);
    });
  });
}
