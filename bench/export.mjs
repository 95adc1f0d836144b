#!/usr/bin/env node
// Weekly compliance exports (`ferry pg export`, pg_dump -Fc -Z0 through FastCDC): how much a second
// export of a mostly unchanged ~1 GB database adds to the repository, against the first.
// Usage: node bench/export.mjs [--rows 6000000] [--keep] [--use-dist]
import { spawnSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { ferryCommand, fmtMiB, fmtS, gitInfo, log, machineInfo, parseArgs, table, warnIfBusy, writeResults, MiB } from './lib.mjs';
import { Cluster, chownPg, pgBinDir, pgEnv, run, stopAllSync } from './pg-lib.mjs';

const USAGE = `Usage: node bench/export.mjs [options]

Builds a PostgreSQL database of about 1 GB (one table of md5 text, less compressible than pgbench's),
takes a \`ferry pg export\`, then a "week" of writes (the newest 1% of rows updated, 0.5% new rows, a
run of 0.01% old rows deleted: ~1.5% of rows touched) and a second export, and prints what each
export stored in the repository and the ratio second / first. A third export after 1% of rows
updated at random across the whole table shows the worst case for chunk dedup. For reference it also
measures \`pg_dump -Fc\` (pg_dump's own compression), what a naive weekly export would store each week,
and \`pg_dump -Fc -Z0\` alone to /dev/null (the speed of the stream Ferry reads).
Writes bench/results/export-<time>.json.

Options:
  --rows N      rows in the table (default 6000000, ~1 GB database with its index)
  --use-dist    run the existing dist/ build (bin/ferry) instead of bundling src/ privately
  --keep        keep the work directory under /tmp (the cluster is stopped anyway)
  -h, --help    this help
`;

const o = parseArgs({ rows: 6_000_000, useDist: false, keep: false }, USAGE);
const ROWS = Math.round(o.rows);
warnIfBusy();

const work = await mkdtemp('/tmp/ferry-bench-export-');
chownPg(work);
const bin = pgBinDir();
const ferry = await ferryCommand({ useDist: o.useDist });
const cluster = new Cluster({ bin, dataDir: join(work, 'pg'), socketDir: work, port: 5499, logFile: join(work, 'pg.log'), name: 'bench' });
let cleaned = false;
const cleanup = () => {
  if (cleaned) return;
  cleaned = true;
  stopAllSync(bin);
  if (!o.keep) spawnSync('rm', ['-rf', work]);
  if (ferry.outdir) spawnSync('rm', ['-rf', ferry.outdir]);
};
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

const repo = join(work, 'repo');
const keyFile = join(work, 'ferry.key');
const env = { ...pgEnv(cluster.env), PGDATABASE: 'app', FERRY_REPO: repo, FERRY_KEY_FILE: keyFile };

function ferryJson(args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(ferry.cmd[0], [...ferry.cmd.slice(1), ...args, '--json'], { env, encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.status !== 0) throw new Error(`ferry ${args.join(' ')} failed:\n${r.stderr}`);
  return { ...JSON.parse(r.stdout), wallS: Number(process.hrtime.bigint() - t0) / 1e9 };
}

try {
  log(`initdb and ${ROWS} rows in ${work}`);
  cluster.initdb(["shared_buffers = '256MB'", "max_wal_size = '4GB'", 'checkpoint_timeout = 30min', 'wal_level = minimal', 'max_wal_senders = 0', 'fsync = off']);
  cluster.start();
  await cluster.sql('CREATE DATABASE app');
  await cluster.sql(
    `CREATE TABLE items (id bigint PRIMARY KEY, customer int, sku text, note text, amount numeric(12,2), created timestamptz);
     INSERT INTO items SELECT g, 1 + g % 5000, md5(g::text), md5((g * 7)::text) || md5((g * 13)::text), (g % 100000) / 100.0,
            timestamptz '2025-01-01' + g * interval '1 second' FROM generate_series(1, ${ROWS}) g;
     VACUUM ANALYZE items;`,
    'app',
  );
  const dbBytes = Number(await cluster.sql("SELECT pg_database_size('app')"));
  log(`database app: ${fmtMiB(dbBytes)} MiB`);
  spawnSync(ferry.cmd[0], [...ferry.cmd.slice(1), 'init', '--key-file', keyFile], { env, stdio: ['ignore', 'ignore', 'inherit'] });

  log('pg_dump -Fc -Z0 alone, to /dev/null (how fast pg_dump produces the stream)');
  const alone = await run(['sh', '-c', `"${join(bin, 'pg_dump')}" -Fc -Z0 app > /dev/null`], { env: pgEnv(cluster.env) });
  log('export 1');
  const e1 = ferryJson(['pg', 'export', '--database', 'app']);
  log(`pg_dump -Fc (default compression) for reference`);
  const ref = await run(['sh', '-c', `"${join(bin, 'pg_dump')}" -Fc app | wc -c`], { env: pgEnv(cluster.env) });
  const fcBytes = Number(ref.stdout.trim());

  log('a week of writes: newest 1% updated, 0.5% inserted, 0.01% deleted');
  await cluster.sql(
    `UPDATE items SET amount = amount + 1, note = 'updated ' || note WHERE id > ${Math.floor(ROWS * 0.99)};
     INSERT INTO items SELECT g, 1 + g % 5000, md5(g::text), md5((g * 7)::text), 1.00, timestamptz '2026-01-01' + g * interval '1 second'
       FROM generate_series(${ROWS + 1}, ${ROWS + Math.floor(ROWS * 0.005)}) g;
     DELETE FROM items WHERE id BETWEEN ${Math.floor(ROWS / 3)} AND ${Math.floor(ROWS / 3) + Math.floor(ROWS * 0.0001)};`,
    'app',
  );
  log('export 2');
  const e2 = ferryJson(['pg', 'export', '--database', 'app']);

  log('worst case: 1% of rows updated at random across the table');
  await cluster.sql(`UPDATE items SET amount = amount + 1 WHERE id % 100 = 37`, 'app');
  log('export 3');
  const e3 = ferryJson(['pg', 'export', '--database', 'app']);

  const rows = [
    ['export', 'dump MiB', 'stored MiB', 'stored / 1st', 'seconds'],
    ['1st (full)', fmtMiB(e1.size), fmtMiB(e1.storedBytes), '1.000', fmtS(e1.wallS)],
    ['2nd (1.5% rows, clustered)', fmtMiB(e2.size), fmtMiB(e2.storedBytes), (e2.storedBytes / e1.storedBytes).toFixed(3), fmtS(e2.wallS)],
    ['3rd (1% rows, scattered)', fmtMiB(e3.size), fmtMiB(e3.storedBytes), (e3.storedBytes / e1.storedBytes).toFixed(3), fmtS(e3.wallS)],
    ['pg_dump -Fc (reference)', fmtMiB(fcBytes), fmtMiB(fcBytes), (fcBytes / e1.storedBytes).toFixed(3), fmtS(ref.wallS)],
    ['pg_dump -Fc -Z0 > /dev/null', fmtMiB(e1.size), '-', '-', fmtS(alone.wallS)],
  ];
  process.stdout.write(`\ndatabase ${fmtMiB(dbBytes)} MiB, ${ROWS} rows\n` + table(rows));
  process.stdout.write(`second weekly export stored ${(100 * e2.storedBytes / e1.storedBytes).toFixed(1)}% of the first\n`);
  const file = writeResults('export', {
    git: gitInfo(),
    machine: machineInfo(),
    rows: ROWS,
    databaseBytes: dbBytes,
    pgDumpFcBytes: fcBytes,
    pgDumpFcSeconds: ref.wallS,
    pgDumpZ0AloneSeconds: alone.wallS,
    exports: [e1, e2, e3].map((e) => ({ id: e.id, size: e.size, storedBytes: e.storedBytes, newBytes: e.newBytes, wallS: e.wallS })),
    secondOverFirst: e2.storedBytes / e1.storedBytes,
    scatteredOverFirst: e3.storedBytes / e1.storedBytes,
  });
  log(`results in ${file}`);
} finally {
  cleanup();
}
