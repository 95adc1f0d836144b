/** Page checksum validation against pages written by a real PostgreSQL 15 cluster with data checksums. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster } from '../harness/pg.ts';
import { badPages } from '../../src/postgres/pagechecksum.ts';
it('validates every page PostgreSQL 15 wrote, and names a corrupted block', async () => {
  const c = await startCluster({ initdbArgs: ['--data-checksums'] });
  try {
    await c.psql('create table t as select g, md5(g::text) from generate_series(1,100000) g; checkpoint;');
    const [{ oid, db }] = await c.query<{ oid: string; db: string }>("select pg_relation_filenode('t')::text as oid, (select oid::text from pg_database where datname=current_database()) as db");
    const data = readFileSync(join(c.dataDir, 'base', db, oid));
    const bad = badPages(data, 0, 0, 0xffffffffffffn);
    assert.equal(bad.length, 0);
    const d2 = Buffer.from(data); d2[8192 * 3 + 500] ^= 1;
    assert.deepEqual(badPages(d2, 0, 0, 0xffffffffffffn), [3]);
  } finally { await c.destroy(); }
});
