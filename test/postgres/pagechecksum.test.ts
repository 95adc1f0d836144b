/** Page checksum validation against pages written by a real PostgreSQL 15 cluster with data checksums. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster } from '../harness/pg.ts';
import { ferryOk } from '../harness/cli.ts';
import { makeTempDir } from '../harness/tmp.ts';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { badPages, pageChecksum } from '../../src/postgres/pagechecksum.ts';
import { scannableBuffer } from '../../src/repo/gearscan.ts';

/** checksum_impl.h's algorithm in plain scalar code: the reference the WebAssembly SIMD version must equal. */
const BASE = [
  0x5b1f36e9, 0xb8525960, 0x02ab50aa, 0x1de66d2a, 0x79ff467a, 0x9bb9f8a3, 0x217e7cd2, 0x83e13d2c, 0xf8d4474f, 0xe39eb970, 0x42c6ae16, 0x993216fa, 0x7b093b5d, 0x98daff3c, 0xf718902a, 0x0b1c9cdb,
  0xe58f764b, 0x187636bc, 0x5d7b3bb1, 0xe73de7de, 0x92bec979, 0xcca6c0b2, 0x304a0979, 0x85aa43d4, 0x783125bb, 0x6ca8eaa2, 0xe407eac6, 0x4b5cfc3e, 0x9fbf8c76, 0x15ca20be, 0xf2ca9fd3, 0x959bd756,
];
function referenceChecksum(page: Buffer, blkno: number): number {
  const p = Buffer.from(page);
  p.writeUInt16LE(0, 8); // pd_checksum counts as zero
  const comp = (sum: number, value: number) => {
    const t = (sum ^ value) >>> 0;
    return (Math.imul(t, 16777619) ^ (t >>> 17)) >>> 0;
  };
  const sums = BASE.slice();
  for (let i = 0; i < 8192 / 128; i++) for (let j = 0; j < 32; j++) sums[j] = comp(sums[j], p.readUInt32LE(i * 128 + j * 4));
  let result = 0;
  for (let j = 0; j < 32; j++) result ^= comp(comp(sums[j], 0), 0);
  return (((result ^ blkno) >>> 0) % 65535) + 1;
}

it('the committed WebAssembly module is the one its .wat source assembles to', () => {
  const r = spawnSync(process.execPath, [join(import.meta.dirname, '..', '..', 'scripts', 'build-wasm.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

it('the SIMD page checksum equals the scalar reference, for any page and block number', () => {
  for (let i = 0; i < 300; i++) {
    const page = randomBytes(8192);
    const blkno = i < 100 ? i : i < 200 ? 131072 * (i - 99) + i : Math.floor(Math.random() * 0xffffffff);
    assert.equal(pageChecksum(page, blkno), referenceChecksum(page, blkno), `page ${i}, block ${blkno}`);
  }
  // In place, in a backup's read buffer (a shared WebAssembly memory), at any offset.
  const buf = scannableBuffer(4 * 8192 + 100);
  for (const at of [0, 8192, 37, 3 * 8192 + 99]) {
    const page = randomBytes(8192);
    page.copy(buf, at);
    assert.equal(pageChecksum(buf.subarray(at, at + 8192), at + 5), referenceChecksum(page, at + 5), `in place at ${at}`);
  }
});

it('validates every page PostgreSQL 15 wrote, and names a corrupted block', async () => {
  const c = await startCluster({ initdbArgs: ['--data-checksums'] });
  const tmp = makeTempDir('ferry-pagecheck-');
  try {
    await c.psql('create table t as select g, md5(g::text) from generate_series(1,100000) g; checkpoint;');
    const [{ oid, db }] = await c.query<{ oid: string; db: string }>("select pg_relation_filenode('t')::text as oid, (select oid::text from pg_database where datname=current_database()) as db");
    const file = join(c.dataDir, 'base', db, oid);
    const data = readFileSync(file);
    const bad = badPages(data, 0, 0, 0xffffffffffffn);
    assert.equal(bad.length, 0);
    const d2 = Buffer.from(data);
    d2[8192 * 3 + 500] ^= 1;
    assert.deepEqual(badPages(d2, 0, 0, 0xffffffffffffn), [3]);
    // The same pages checked in place in a read buffer, as the snapshot does (a chunk of 8 pages at page 1).
    const inBuf = scannableBuffer(10 * 8192);
    d2.copy(inBuf, 8192, 0, 10 * 8192);
    assert.deepEqual(badPages(inBuf.subarray(8192, 9 * 8192), 0, 0, 0xffffffffffffn), [3]);
    assert.deepEqual(badPages(inBuf.subarray(4 * 8192, 6 * 8192), 3 * 8192, 0, 0xffffffffffffn), [3]);
    assert.deepEqual(badPages(inBuf.subarray(5 * 8192, 9 * 8192), 4 * 8192, 0, 0xffffffffffffn), []);

    // On disk, with the server running: the snapshot reads the page, reads it again
    // (a torn read would pass the second time), and reports file and block.
    await c.stop();
    writeFileSync(file, d2);
    await c.start();
    const env = { ...c.env, FERRY_REPO: join(tmp.path, 'repo'), FERRY_KEY_FILE: join(tmp.path, 'key') };
    await ferryOk(['init', '--key-file', env.FERRY_KEY_FILE], { env });
    const r = await ferryOk(['pg', 'snapshot', '--no-archive-check', '--no-fingerprint', '--json'], { env });
    assert.deepEqual(JSON.parse(r.stdout).meta.checksumFailures, [{ file: `base/${db}/${oid}`, block: 3 }]);
    assert.match(r.stderr, new RegExp(`base/${db}/${oid} block 3`));
  } finally {
    await c.destroy();
    tmp.cleanup();
  }
});
