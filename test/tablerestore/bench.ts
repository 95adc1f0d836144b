/**
 * Time and memory of `ferry pg restore-table` on a large table (not part of npm test):
 *   node --import tsx test/tablerestore/bench.ts [ROWS]   (default 1,000,000)
 * A throwaway cluster archiving into a repository, a table of ROWS rows, a snapshot,
 * half the rows deleted, then a dry run and a merge from a time before the delete,
 * each timed, with ferry's max RSS from /usr/bin/time.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { archivedCluster, switchAndWaitArchived } from '../harness/archive.ts';
import { childEnv, FERRY, ferryOk } from '../harness/cli.ts';

const rowsN = Number(process.argv[2] ?? 1_000_000);
const a = await archivedCluster();
try {
  await a.cluster.psql(`CREATE TABLE big (id bigint PRIMARY KEY, email text NOT NULL, payload text, n numeric, at timestamptz);
    INSERT INTO big SELECT g, 'u' || g || '@example.com', md5(g::text) || md5((g*7)::text), g / 3.0, '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, ${rowsN}) g;`);
  const [{ size }] = await a.cluster.query<{ size: string }>("SELECT pg_size_pretty(pg_total_relation_size('big')) AS size");
  await ferryOk(['pg', 'snapshot'], { env: a.env });
  const [{ t }] = await a.cluster.query<{ t: string }>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS t");
  await a.cluster.psql('DELETE FROM big WHERE id % 2 = 0');
  await switchAndWaitArchived(a.cluster);
  const scratch = join(a.tmp.path, 'scratch');
  mkdirSync(scratch);
  for (const extra of [['--dry-run'], []]) {
    const t0 = Date.now();
    const r = spawnSync('/usr/bin/time', ['-f', 'maxrss_kb=%M', FERRY, 'pg', 'restore-table', 'public.big', '--from-time', t, '--mode', 'merge', '--scratch-dir', scratch, ...extra], { env: childEnv(a.env), encoding: 'utf8' });
    console.log(`table ${size}, ${rowsN} rows, merge ${extra.join(' ')}: exit ${r.status} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    console.log(r.stdout.trim());
    console.log(r.stderr.trim().split('\n').filter((l) => /maxrss|error|restoring snapshot|starting/.test(l)).join('\n'));
  }
  const [{ n }] = await a.cluster.query<{ n: string }>('SELECT count(*) AS n FROM big');
  console.log('rows after merge:', n);
} finally {
  await a.destroy();
}
