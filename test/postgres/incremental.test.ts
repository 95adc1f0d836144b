/**
 * Issue 3 acceptance: after ~5% of rows change in a ~750 MB database, the next
 * snapshot stores roughly the changed pages, not whole relation files.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ferry, ferryOk } from '../harness/cli.ts';
import { freePort } from '../harness/pg.ts';
import { archivedCluster, stopAtExit, stopDataDir, type ArchivedCluster } from '../harness/archive.ts';
import { compareFingerprints, fingerprintCluster } from '../../src/postgres/fingerprint.ts';
import { PAGE_CHUNK } from '../../src/postgres/layout.ts';

let a: ArchivedCluster;
before(async () => {
  a = await archivedCluster({ conf: ['max_wal_size = 2GB', 'checkpoint_timeout = 30min'] });
  await a.cluster.pgbench(['-i', '-s', '50', '-q']);
});
after(async () => {
  await a?.destroy();
});

it('a snapshot after 5% of rows changed stores about the changed pages', async (t) => {
  const first = JSON.parse((await ferryOk(['pg', 'snapshot', '--no-fingerprint', '--json'], { env: a.env })).stdout);
  const [{ size }] = await a.cluster.query<{ size: string }>("SELECT pg_relation_size('pgbench_accounts')::text AS size");
  // 5% of the rows, as one range (an import or a batch job), then a checkpoint so the pages hit the files.
  await a.cluster.query('UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 250000');
  await a.cluster.query('CHECKPOINT');
  const second = JSON.parse((await ferryOk(['pg', 'snapshot', '--json'], { env: a.env })).stdout);
  const s = second.stats;
  t.diagnostic(`pgbench_accounts ${(Number(size) / 2 ** 20).toFixed(0)} MiB; first snapshot stored ${(first.stats.storedBytes / 2 ** 20).toFixed(1)} MiB; second read ${s.filesRead} files, found ${(s.newBytes / 2 ** 20).toFixed(1)} MiB of changed chunks, stored ${(s.storedBytes / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(s.filesUnchanged > s.filesRead, 'unchanged files are not read');
  // The update rewrites ~5% of the table's rows into new tuple versions (~10% of its pages change:
  // old versions marked dead, new ones appended). Whole-file copies would be 100%.
  assert.ok(s.newBytes < 0.25 * Number(size), `changed chunks ${s.newBytes} of a ${size}-byte table`);
  // Chunks whose pages all predate the first snapshot's start are taken from it without hashing:
  // most of pgbench_accounts.
  assert.ok(s.chunksReused > (0.6 * Number(size)) / PAGE_CHUNK, `${s.chunksReused} chunks reused`);

  // The reused chunks are right: the snapshot restored to its fingerprint's LSN holds exactly the
  // data the fingerprint saw. (WAL replay starts at the second snapshot's start, so a stale page
  // taken from the first would stay stale and change the checksum.)
  const fp = second.meta.fingerprint;
  const dir = join(a.tmp.path, 'incremental-restored');
  const port = await freePort();
  stopAtExit(dir);
  try {
    const r = await ferry(['pg', 'restore', '--target-dir', dir, '--snapshot', second.id, '--to-lsn', fp.lsn, '--start', '--port', String(port), '--no-archive', '--json'], { env: a.env });
    assert.equal(r.code, 0, r.stderr);
    const again = await fingerprintCluster(`postgresql://postgres@/postgres?host=${encodeURIComponent(dir)}&port=${port}`);
    assert.deepEqual(compareFingerprints(fp.tables, again.tables), []);
  } finally {
    stopDataDir(dir);
  }
});
