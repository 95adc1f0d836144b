/**
 * Issue 3 acceptance: after ~5% of rows change in a ~750 MB database, the next
 * snapshot stores roughly the changed pages, not whole relation files.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { ferryOk } from '../harness/cli.ts';
import { archivedCluster, type ArchivedCluster } from '../harness/archive.ts';

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
  const second = JSON.parse((await ferryOk(['pg', 'snapshot', '--no-fingerprint', '--json'], { env: a.env })).stdout);
  const s = second.stats;
  t.diagnostic(`pgbench_accounts ${(Number(size) / 2 ** 20).toFixed(0)} MiB; first snapshot stored ${(first.stats.storedBytes / 2 ** 20).toFixed(1)} MiB; second read ${s.filesRead} files, found ${(s.newBytes / 2 ** 20).toFixed(1)} MiB of changed chunks, stored ${(s.storedBytes / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(s.filesUnchanged > s.filesRead, 'unchanged files are not read');
  // The update rewrites ~5% of the table's rows into new tuple versions (~10% of its pages change:
  // old versions marked dead, new ones appended). Whole-file copies would be 100%.
  assert.ok(s.newBytes < 0.25 * Number(size), `changed chunks ${s.newBytes} of a ${size}-byte table`);
});
