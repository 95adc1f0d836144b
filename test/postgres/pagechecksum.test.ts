/** Page checksum validation against pages written by a real PostgreSQL 15 cluster with data checksums. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster } from '../harness/pg.ts';
import { ferryOk } from '../harness/cli.ts';
import { makeTempDir } from '../harness/tmp.ts';
import { badPages } from '../../src/postgres/pagechecksum.ts';

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
