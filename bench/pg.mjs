#!/usr/bin/env node
// Side-by-side benchmark of Ferry's PostgreSQL snapshots, restores, PITR and WAL archiving against
// pgBackRest on the same cluster data. Usage: node bench/pg.mjs [--scale 50] [--scales 50,200] [--keep]
// bench/README.md ("pg.mjs") explains the set-up and the output.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { ROOT, MiB, ensureGnuTime, ferryCommand, fmtMiB, fmtRatio, fmtS, gitInfo, log, machineInfo, parseArgs, table, warmCache, writeResults } from './lib.mjs';
import {
  Cluster, chownPg, du, ensurePgbackrest, envOptions, pgBinDir, pgEnv, pgbackrestConf, quantile, run, runSync, sleep, stopAllSync,
  stopDataDirSync, trackDataDir, uptimeLine, waitForQuiet,
} from './pg-lib.mjs';

const USAGE = `Usage: node bench/pg.mjs [options]

Builds a PostgreSQL cluster (pgbench data plus a less compressible table), copies it into two identical
clusters, one archiving WAL with \`ferry wal push\`, the other with \`pgbackrest archive-push\`, and runs
for each tool, back to back: full snapshot/backup, incremental after ~5% of the rows changed (time and
repository growth), restore of the latest snapshot (files only), PITR to a time with the server started
until it accepts writes, and pushing the same pre-generated WAL segments one by one. Prints a table
with ratios (ferry / pgBackRest) and the goals, writes bench/results/pg-<time>.json.

Options:
  --scale N           pgbench scale factor (default 50, ~750 MB)
  --scales LIST       several scales, run one after the other, e.g. 50,200 (overrides --scale)
  --random-mb N       size of the less compressible table in MiB (default 300)
  --wal-segments N    WAL segments pushed one by one in the WAL step (default 100)
  --pitr-wal-mb N     WAL written between the incremental snapshot and the PITR target (default 256)
  --catch-up-segments N  WAL segments in the archive catch-up steps (default 64)
  --restore-rounds N  restores per tool, alternating which goes first; the median is reported (default 3)
  --pgbackrest-first  run pgBackRest before Ferry in every step (default: Ferry first)
  --pgbackrest-cipher also encrypt pgBackRest's repository (aes-256-cbc); Ferry always encrypts
  --ferry-no-fingerprint  run \`ferry pg snapshot --no-fingerprint\` (skips the row-count/checksum scan of
                      every table that pgBackRest does not do; default: Ferry's defaults)
  --keep-node-extra-ca-certs  leave NODE_EXTRA_CA_CERTS in the environment of the clusters and tools
                      (Node 20 reads it at every start: ~40 ms per \`ferry wal push\`; default: removed,
                      as on a database host that does not set it)
  --max-load-wait S   wait up to S seconds at the start for the load average to drop below 1.5 (default 180)
  --use-dist          run the existing dist/ build (bin/ferry) instead of bundling src/ privately
  --keep              keep the work directory under /tmp (clusters are stopped anyway)
  -h, --help          this help
`;

const o = parseArgs(
  { scale: 50, scales: '', randomMb: 300, walSegments: 100, pitrWalMb: 256, catchUpSegments: 64, restoreRounds: 3, pgbackrestFirst: false, pgbackrestCipher: false, ferryNoFingerprint: false, keepNodeExtraCaCerts: false, maxLoadWait: 180, useDist: false, keep: false },
  USAGE,
);
const scales = (o.scales ? o.scales.split(',') : [String(o.scale)]).map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`bench: --scales: not a positive whole number: ${s}\n`);
    process.exit(2);
  }
  return n;
});
o.walSegments = Math.round(o.walSegments);
if (!Number.isInteger(o.restoreRounds)) {
  process.stderr.write(`bench: --restore-rounds: not a positive whole number: ${o.restoreRounds}\n`);
  process.exit(2);
}
envOptions.keepNodeExtraCaCerts = o.keepNodeExtraCaCerts;

const GOALS = {
  full: { max: 0.7, text: '<= 0.70' },
  incr: { max: 0.3, text: '<= 0.30' },
  growth: { max: 0.3, text: '<= 0.30' },
  restore: { max: 0.7, text: '<= 0.70' },
  walPush: { max: 1.0, text: '<= 1.00' },
};

// ------------------------------------------------------------------ setup and cleanup
const BIN = pgBinDir();
const pgbrVersion = ensurePgbackrest();
const timeBin = ensureGnuTime();
const ferry = await ferryCommand({ useDist: o.useDist });
// archive_command and restore_command need one executable: a copy of bin/ferry next to the private
// dist/ (bin/ferry loads ../dist/ferry.mjs), or bin/ferry itself with --use-dist.
let FERRY_BIN = join(ROOT, 'bin', 'ferry');
if (ferry.outdir) {
  mkdirSync(join(ferry.outdir, 'bin'), { recursive: true });
  FERRY_BIN = join(ferry.outdir, 'bin', 'ferry');
  for (const f of ['ferry', 'ferry-wal-push', 'ferry-wal-fetch', 'ferry-wal.sh', 'package.json']) copyFileSync(join(ROOT, 'bin', f), join(ferry.outdir, 'bin', f)); // package.json: bin/ferry is CommonJS
  chmodSync(FERRY_BIN, 0o755);
  for (const f of ['ferry-wal-push', 'ferry-wal-fetch']) chmodSync(join(ferry.outdir, 'bin', f), 0o755);
}
const FERRY_PUSH_BIN = join(FERRY_BIN, '..', 'ferry-wal-push');

const workDirs = [];
let cleaned = false;
function cleanup() {
  if (cleaned) return;
  cleaned = true;
  stopAllSync(BIN);
  if (o.keep) log(`kept ${workDirs.join(' ')}`);
  else for (const d of workDirs) rmSync(d, { recursive: true, force: true });
  if (ferry.outdir) rmSync(ferry.outdir, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    log(`${sig}: stopping clusters and removing temp dirs`);
    cleanup();
    process.exit(130);
  });
}

const uptimeStart = uptimeLine();
log(`uptime at start: ${uptimeStart}`);
const quiet = await waitForQuiet(1.5, o.maxLoadWait);
const uptimeAfterWait = uptimeLine();
if (quiet.waitedS > 0) log(`uptime after waiting: ${uptimeAfterWait}`);
log(`${pgbrVersion}; PostgreSQL ${BIN}; ferry ${FERRY_BIN}; ${cpus().length} cores`);

const snapArgs = o.ferryNoFingerprint ? ['--no-fingerprint'] : [];
const order = o.pgbackrestFirst ? ['pgbackrest', 'ferry'] : ['ferry', 'pgbackrest'];
const slim = (m) => (m ? { wallS: +m.wallS.toFixed(3), peakRssMiB: m.rssKB == null ? null : +(m.rssKB / 1024).toFixed(1), userS: m.userS, sysS: m.sysS } : null);

// ------------------------------------------------------------------ one scale
async function benchScale(scale) {
  const work = await mkdtemp('/tmp/ferry-bench-pg-');
  workDirs.push(work);
  chownPg(work);
  const P = (...p) => join(work, ...p);
  const mk = (d) => {
    mkdirSync(d, { recursive: true, mode: 0o700 });
    chownPg(d);
    return d;
  };
  mk(P('sock'));
  mk(P('logs'));
  mk(P('tmp'));
  const R = { scale, work, steps: {}, errors: [], info: {} };
  const tooled = (argv, extra = {}) => run(argv, { cwd: work, timeBin, timeDir: P('tmp'), ...extra });
  log(`scale ${scale}: work dir ${work}`);

  // ---------------------------------------------------------------- base cluster and data
  const walKeepMb = (o.walSegments + 16) * 16;
  const base = new Cluster({ bin: BIN, dataDir: P('a'), socketDir: P('sock'), port: 5440, logFile: P('logs', 'base.log'), name: 'base' });
  base.initdb([
    "listen_addresses = ''",
    'wal_level = replica',
    'max_wal_senders = 4',
    'shared_buffers = 128MB',
    'max_wal_size = 4GB',
    'min_wal_size = 256MB',
    'checkpoint_timeout = 30min',
    'fsync = on',
    'synchronous_commit = on',
    'full_page_writes = on',
    'logging_collector = off',
    "log_line_prefix = '%m [%p] '",
    'archive_mode = off',
    `wal_keep_size = ${walKeepMb}MB`,
  ]);
  base.start();
  const startSeg = await base.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
  let t0 = Date.now();
  log(`loading pgbench scale ${scale}`);
  await base.pgbench(['-i', '-s', String(scale), '-q', 'postgres']);
  log(`pgbench -i done in ${((Date.now() - t0) / 1000).toFixed(0)} s; loading bench_random (~${o.randomMb} MiB: md5 text, uuid, numeric, jsonb)`);
  await base.sql(`CREATE TABLE bench_random (id bigint NOT NULL, a text NOT NULL, u uuid NOT NULL, n numeric(20,6) NOT NULL, f double precision NOT NULL, j jsonb NOT NULL)`);
  let rows = 0;
  const batch = 200_000;
  while (Number(await base.sql("SELECT pg_total_relation_size('bench_random')")) < o.randomMb * MiB * 0.97) {
    await base.sql(`INSERT INTO bench_random SELECT g, md5(random()::text) || md5(random()::text), gen_random_uuid(), round((random() * 1e12)::numeric, 6), random(),
      jsonb_build_object('k', md5(g::text), 'v', (random() * 1e6)::int, 't', gen_random_uuid()::text, 'r', random()) FROM generate_series(${rows + 1}, ${rows + batch}) g`);
    rows += batch;
  }
  await base.sql('ALTER TABLE bench_random ADD PRIMARY KEY (id)');
  await base.sql('VACUUM (ANALYZE) bench_random');
  const accounts = scale * 100_000;
  R.data = {
    pgbenchAccounts: accounts,
    randomRows: rows,
    randomTableBytes: Number(await base.sql("SELECT pg_total_relation_size('bench_random')")),
    accountsTableBytes: Number(await base.sql("SELECT pg_total_relation_size('pgbench_accounts')")),
    databaseBytes: Number(await base.sql('SELECT sum(pg_database_size(oid)) FROM pg_database')),
  };
  log(`data loaded in ${((Date.now() - t0) / 1000).toFixed(0)} s: databases ${fmtMiB(R.data.databaseBytes)} MiB (pgbench_accounts ${fmtMiB(R.data.accountsTableBytes)} MiB, bench_random ${rows} rows ${fmtMiB(R.data.randomTableBytes)} MiB)`);

  // WAL segments for the push step: the last N complete segments of the load (kept by wal_keep_size).
  const segNames = () => readdirSync(join(base.dataDir, 'pg_wal')).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  let current = await base.sql('SELECT pg_walfile_name(pg_switch_wal())');
  current = await base.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
  let have = segNames().filter((n) => n >= startSeg && n < current);
  if (have.length < o.walSegments) {
    const short = o.walSegments - have.length + 2;
    log(`the load wrote ${have.length} WAL segments; writing ~${short} more (a filler table, dropped again)`);
    await base.sql(`CREATE TABLE bench_filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS t, random() AS r FROM generate_series(1, ${short * 16 * MiB / 140 | 0}) g`);
    await base.sql('DROP TABLE bench_filler');
    await base.sql('SELECT pg_switch_wal()');
    current = await base.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
    have = segNames().filter((n) => n >= startSeg && n < current);
  }
  const spool = mk(P('walspool'));
  const pushSegs = have.slice(-o.walSegments);
  for (const n of pushSegs) copyFileSync(join(base.dataDir, 'pg_wal', n), join(spool, n));
  chownPg(spool);
  log(`copied ${pushSegs.length} WAL segments (${pushSegs[0]} .. ${pushSegs.at(-1)}) for the push step`);
  await base.sql('ALTER SYSTEM SET wal_keep_size = 0');
  await base.sql('SELECT pg_reload_conf()');
  await base.sql('CHECKPOINT');
  await base.sql('CHECKPOINT');
  base.stop('fast');

  // ---------------------------------------------------------------- two identical clusters
  log('copying the data directory: a/ archives with ferry, b/ with pgbackrest');
  runSync(['cp', '-a', P('a'), P('b')], { env: pgEnv() });
  R.data.dataDirBytes = du(P('a')) - du(P('a', 'pg_wal'));

  const keyFile = P('ferry.key');
  const ferryRepo = P('ferry-repo');
  const ferryEnv = (c, repo = ferryRepo, key = keyFile) => pgEnv({ ...(c ? c.env : {}), FERRY_REPO: repo, FERRY_KEY_FILE: key });
  await run([FERRY_BIN, 'init', '--key-file', keyFile], { env: ferryEnv(null), cwd: work, label: 'ferry init' });

  mk(P('pgbr'));
  mk(P('pgbr', 'log'));
  mk(P('pgbr', 'lock'));
  const A = new Cluster({ bin: BIN, dataDir: P('a'), socketDir: P('sock'), port: 5441, logFile: P('logs', 'a.log'), name: 'cluster a (ferry)' });
  const B = new Cluster({ bin: BIN, dataDir: P('b'), socketDir: P('sock'), port: 5442, logFile: P('logs', 'b.log'), name: 'cluster b (pgbackrest)' });
  const pgbrConf = P('pgbr', 'pgbackrest.conf');
  const cipherPass = o.pgbackrestCipher ? 'bench-cipher-passphrase-correct-horse' : undefined;
  writeFileSync(pgbrConf, pgbackrestConf({ repoPath: P('pgbr', 'repo'), cluster: B, logPath: P('pgbr', 'log'), lockPath: P('pgbr', 'lock'), cipherPass }));
  chownPg(P('pgbr'));
  const pgbr = (...args) => ['pgbackrest', `--config=${pgbrConf}`, '--stanza=bench', ...args];
  A.appendConf(['archive_mode = on', `archive_command = 'FERRY_REPO=${ferryRepo} FERRY_KEY_FILE=${keyFile} ${FERRY_BIN} wal push %p'`]);
  B.appendConf(['archive_mode = on', `archive_command = 'pgbackrest --config=${pgbrConf} --stanza=bench archive-push %p'`]);
  A.start();
  B.start();
  await run(pgbr('stanza-create'), { cwd: work, label: 'pgbackrest stanza-create' });
  await run(pgbr('check'), { cwd: work, label: 'pgbackrest check' });
  await A.switchAndWaitArchived();
  R.info.archiveCommand = { ferry: `FERRY_REPO=… FERRY_KEY_FILE=… ${FERRY_BIN} wal push %p`, pgbackrest: `pgbackrest --config=… --stanza=bench archive-push %p` };

  const repoSizes = () => {
    const f = du(ferryRepo);
    const fw = du(join(ferryRepo, 'wal'));
    const p = du(P('pgbr', 'repo'));
    const pw = du(P('pgbr', 'repo', 'archive'));
    return { ferry: { total: f, wal: fw, backup: f - fw }, pgbackrest: { total: p, wal: pw, backup: p - pw } };
  };
  const pgbrInfo = async () => {
    const r = await run(pgbr('info', '--output=json'), { cwd: work, label: 'pgbackrest info' });
    return JSON.parse(r.stdout)[0];
  };

  /** One row of several rounds of a step: each tool's median round (by wall time), with every round's time; an error if any round failed. */
  function medianRow(title, rows) {
    const row = { title };
    for (const t of order) {
      const runs = rows.map((r) => r[t]);
      const failed = runs.find((x) => x.error);
      if (failed) {
        row[t] = failed;
        continue;
      }
      const sorted = [...runs].sort((a, b) => a.wallS - b.wallS);
      row[t] = { ...sorted[Math.floor((sorted.length - 1) / 2)], roundsS: runs.map((x) => +x.wallS.toFixed(3)) };
    }
    return row;
  }

  /**
   * What the disk allows a restore of `bytes`: the same number of bytes of random data (from the
   * page cache) written with dd, O_DIRECT and one fsync at the end, into the work directory's
   * filesystem, twice. Every restored byte must reach the disk before either tool reports
   * success, so no restore can beat this; on this VM it varies from run to run (about 1.5 to 3.3 s
   * for 1.1 GiB), and a restore ratio near 1 with both tools near the floor means the disk bounds both.
   */
  function diskFloor(bytes) {
    if (!bytes) return undefined;
    const src = P('tmp', 'floor-src');
    const dst = P('tmp', 'floor-dst');
    const mib = Math.ceil(bytes / MiB);
    const made = spawnSync('sh', ['-c', `head -c ${mib * MiB} /dev/urandom > "$1"`, 'sh', src], { stdio: 'inherit' });
    if (made.status !== 0) throw new Error('disk floor: cannot write random data');
    const wallS = [];
    for (let i = 0; i < 2; i++) {
      spawnSync('sync');
      const t0 = process.hrtime.bigint();
      const r = spawnSync('dd', [`if=${src}`, `of=${dst}`, 'bs=4M', 'oflag=direct', 'conv=fsync'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`disk floor: dd failed: ${r.stderr}`);
      wallS.push(+(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(3));
      rmSync(dst, { force: true });
    }
    rmSync(src, { force: true });
    log(`restore disk floor (dd of ${mib} MiB, O_DIRECT + fsync): ${wallS.map(fmtS).join(' s, ')} s`);
    return { bytes: mib * MiB, wallS };
  }

  /** Runs fn(tool) for both tools (in `order` unless `tools` says otherwise); a failure is recorded and does not stop the other tool. */
  async function step(key, title, fn, tools = order) {
    const row = { title };
    for (const t of tools) {
      // Flush dirty pages (the data copy, the previous tool's writes) so neither tool pays for the other's writeback.
      spawnSync('sync');
      log(`${title}: ${t} ...`);
      try {
        row[t] = await fn(t);
        log(`${title}: ${t} ${fmtS(row[t].wallS)} s`);
      } catch (e) {
        row[t] = { error: String(e.message ?? e).slice(0, 4000) };
        R.errors.push({ step: key, tool: t, error: row[t].error });
        log(`${title}: ${t} FAILED: ${row[t].error.split('\n').slice(0, 6).join('\n  ')}`);
      }
    }
    R.steps[key] = row;
    return row;
  }
  /** WAL written on each cluster while fn runs (what the backup made PostgreSQL write and archive). */
  const walDuring = async (key, fn) => {
    const before = { a: await A.sql('SELECT pg_current_wal_lsn()'), b: await B.sql('SELECT pg_current_wal_lsn()') };
    const r = await fn();
    R.info.walDuring = R.info.walDuring ?? {};
    R.info.walDuring[key] = {
      ferry: Number(await A.sql(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${before.a}')`)),
      pgbackrest: Number(await B.sql(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${before.b}')`)),
    };
    return r;
  };
  const bothArchived = async () => {
    await A.switchAndWaitArchived();
    await B.switchAndWaitArchived();
  };

  // ---------------------------------------------------------------- 1 full
  await bothArchived();
  warmCache(A.dataDir, B.dataDir);
  R.repo = { start: repoSizes() };
  await walDuring('full', () => step('full', 'full snapshot / backup', async (t) => {
    if (t === 'ferry') {
      const m = await tooled([FERRY_BIN, 'pg', 'snapshot', '--json', ...snapArgs], { env: ferryEnv(A), label: 'ferry pg snapshot' });
      const j = JSON.parse(m.stdout);
      return { ...m, info: { id: j.id, stats: j.stats, startLsn: j.meta?.startLsn, stopLsn: j.meta?.stopLsn, fingerprintTables: j.meta?.fingerprint?.tables?.length } };
    }
    const m = await tooled(pgbr('--type=full', 'backup'), { label: 'pgbackrest backup --type=full' });
    const b = (await pgbrInfo()).backup.at(-1);
    return { ...m, info: { label: b.label, type: b.type, info: b.info, lsn: b.lsn } };
  }));
  R.repo.afterFull = repoSizes();

  // What Ferry's data fingerprint costs (it scans every table inside the snapshot): the same queries, timed.
  {
    const tables = (await A.sql("SELECT string_agg(format('%I.%I', n.nspname, c.relname), ' ') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','m') AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND c.relpersistence = 'p'")).split(' ');
    // On both clusters, so whatever the scan changes (hint bits) changes on both before step 2.
    for (const c of [A, B]) {
      const ts = Date.now();
      // As src/postgres/fingerprint.ts: rows hashed as records, as text where a column type has no hash function.
      for (const tb of tables) {
        await c.sql(`SELECT count(*), coalesce(sum(hash_record_extended(t, 0)), 0) FROM ONLY ${tb} t`).catch(() => c.sql(`SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) FROM ONLY ${tb} t`));
      }
      if (c === A) R.info.fingerprintScanS = +((Date.now() - ts) / 1000).toFixed(2);
    }
    log(`(info) the fingerprint queries alone take ${R.info.fingerprintScanS} s on this data`);
  }

  // ---------------------------------------------------------------- 2 change 5%, incremental
  const acc5 = Math.round(accounts * 0.05);
  const rnd5 = Math.round(rows * 0.05);
  const changeSql = `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= ${acc5};
    UPDATE bench_random SET n = n + 1, a = md5(a) || md5(a || 'x'), j = j || jsonb_build_object('v', (random() * 1e6)::int) WHERE id <= ${rnd5};
    CHECKPOINT;`;
  log(`changing 5% of the rows on both clusters (pgbench_accounts aid <= ${acc5}, bench_random id <= ${rnd5}), CHECKPOINT`);
  t0 = Date.now();
  const lsnBefore = { a: await A.sql('SELECT pg_current_wal_lsn()'), b: await B.sql('SELECT pg_current_wal_lsn()') };
  await A.sql(changeSql);
  await B.sql(changeSql);
  R.info.changeWalBytes = {
    a: Number(await A.sql(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${lsnBefore.a}')`)),
    b: Number(await B.sql(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${lsnBefore.b}')`)),
  };
  await bothArchived();
  log(`changed in ${((Date.now() - t0) / 1000).toFixed(0)} s (WAL ${fmtMiB(R.info.changeWalBytes.a)} MiB per cluster, archived)`);
  warmCache(A.dataDir, B.dataDir);
  R.repo.beforeIncr = repoSizes();
  await walDuring('incr', () => step('incr', 'incremental after 5% rows changed', async (t) => {
    if (t === 'ferry') {
      const m = await tooled([FERRY_BIN, 'pg', 'snapshot', '--json', ...snapArgs], { env: ferryEnv(A), label: 'ferry pg snapshot (2nd)' });
      const j = JSON.parse(m.stdout);
      return { ...m, info: { id: j.id, stats: j.stats } };
    }
    const m = await tooled(pgbr('--type=incr', 'backup'), { label: 'pgbackrest backup --type=incr' });
    const b = (await pgbrInfo()).backup.at(-1);
    return { ...m, info: { label: b.label, type: b.type, info: b.info } };
  }));
  R.repo.afterIncr = repoSizes();

  // ---------------------------------------------------------------- 3 WAL for PITR, target time, "incident"
  log(`PITR workload on both clusters: pgbench -t 2000 -c 2, then 5% range updates of bench_random until ~${o.pitrWalMb} MiB of WAL`);
  const walStart = { a: await A.sql('SELECT pg_current_wal_lsn()'), b: await B.sql('SELECT pg_current_wal_lsn()') };
  const workload = async (c, batches) => {
    await run([join(BIN, 'pgbench'), '-n', '-c', '2', '-j', '2', '-t', '2000', 'postgres'], { env: pgEnv({ ...c.env, PGOPTIONS: '-c synchronous_commit=off' }), label: 'pgbench -t 2000' });
    let i = 0;
    for (;;) {
      if (batches !== undefined ? i >= batches : Number(await c.sql(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${c === A ? walStart.a : walStart.b}')`)) >= o.pitrWalMb * MiB) break;
      const lo = rnd5 + 1 + ((i * rnd5) % (rows - rnd5));
      await c.sql(`UPDATE bench_random SET n = n + 2 WHERE id BETWEEN ${lo} AND ${lo + rnd5 - 1}`);
      i++;
      if (i > 200) break;
    }
    return i;
  };
  const batches = await workload(A);
  await workload(B, batches);
  R.info.pitrWalBytes = {
    a: Number(await A.sql(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${walStart.a}')`)),
    b: Number(await B.sql(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${walStart.b}')`)),
  };
  const sumsSql = 'SELECT (SELECT sum(abalance) FROM pgbench_accounts) || \'|\' || (SELECT sum(n) FROM bench_random)';
  const expected = { ferry: await A.sql(sumsSql), pgbackrest: await B.sql(sumsSql) };
  await sleep(1500);
  const target = await A.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
  await sleep(1500);
  const incident = 'UPDATE pgbench_accounts SET abalance = abalance + 1000 WHERE aid <= 1000';
  await A.sql(incident);
  await B.sql(incident);
  await bothArchived();
  R.info.pitr = { target, batches, expected };
  log(`PITR target ${target} (WAL since the incremental: ${fmtMiB(R.info.pitrWalBytes.a)} MiB); the "incident" (+1000 on 1000 rows) came 1.5 s later; archived`);
  R.repo.beforeRestore = repoSizes();

  // ---------------------------------------------------------------- 4 restore (files only)
  warmCache(ferryRepo, P('pgbr', 'repo'));
  // Several rounds, the first tool alternating, each into a new directory (removing the last
  // restore first would leave this filesystem, which has no journal, scanning past its freshly
  // deleted inodes for every file created: about a fifth of each tool's CPU time here); the
  // table shows each tool's median round; the results keep every round (steps restore-1, ...).
  const restoreRounds = [];
  const restoreDirs = [];
  for (let i = 0; i < o.restoreRounds; i++) {
    const rdir = { ferry: mk(P(`restore-ferry-${i + 1}`)), pgbackrest: mk(P(`restore-pgbr-${i + 1}`)) };
    restoreDirs.push(...Object.values(rdir));
    const title = `restore latest (files only), round ${i + 1} of ${o.restoreRounds}`;
    const row = await step(`restore-${i + 1}`, title, async (t) => {
      if (t === 'ferry') {
        const m = await tooled([FERRY_BIN, 'pg', 'restore', '--target-dir', rdir.ferry, '--no-archive', '--json'], { env: ferryEnv(null), label: 'ferry pg restore' });
        const j = JSON.parse(m.stdout);
        return { ...m, info: { snapshot: j.snapshot, restoredBytes: du(rdir.ferry) } };
      }
      const m = await tooled(pgbr(`--pg1-path=${rdir.pgbackrest}`, '--archive-mode=off', 'restore'), { label: 'pgbackrest restore' });
      return { ...m, info: { restoredBytes: du(rdir.pgbackrest) } };
    }, i % 2 ? [...order].reverse() : order);
    restoreRounds.push(row);
  }
  R.steps.restore = medianRow('restore latest (files only)', restoreRounds);
  for (const d of restoreDirs) rmSync(d, { recursive: true, force: true });
  R.info.restoreDiskFloor = diskFloor(R.steps.restore.ferry?.info?.restoredBytes ?? R.steps.restore.pgbackrest?.info?.restoredBytes);

  // ---------------------------------------------------------------- 5 PITR restore to ready
  const pdir = { ferry: P('pitr-ferry'), pgbackrest: P('pitr-pgbr') };
  const ports = { ferry: 5443, pgbackrest: 5444 };
  const writeCheck = 'CREATE TABLE bench_pitr_check (x int); INSERT INTO bench_pitr_check VALUES (1); SELECT pg_is_in_recovery();';
  const psqlAt = (dir, port, sql) => run([join(BIN, 'psql'), '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', dir, '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', sql], { env: pgEnv(), label: `psql on ${dir}`, allowFail: true });
  await step('pitr', 'PITR restore-to-ready (time target, start, promoted, a write)', async (t) => {
    const dir = pdir[t];
    mk(dir);
    trackDataDir(dir);
    const tStart = process.hrtime.bigint();
    const parts = {};
    let m;
    if (t === 'ferry') {
      m = await tooled([FERRY_BIN, 'pg', 'restore', '--target-dir', dir, '--to-time', target, '--start', '--port', String(ports.ferry), '--no-archive', '--json'], { env: ferryEnv(null), label: 'ferry pg restore --to-time --start' });
      parts.restoreCommandS = +m.wallS.toFixed(3);
      const j = JSON.parse(m.stdout);
      parts.reached = j.reached;
      parts.walFetch = j.walFetch; // 'async' (bin/ferry-wal-fetch, the default) or 'sync'
      if (j.prefetch) parts.prefetch = j.prefetch;
    } else {
      m = await tooled(pgbr(`--pg1-path=${dir}`, '--type=time', `--target=${target}`, '--target-action=promote', '--archive-mode=off', 'restore'), { label: 'pgbackrest restore --type=time' });
      parts.restoreCommandS = +m.wallS.toFixed(3);
      const s = await run([join(BIN, 'pg_ctl'), '-D', dir, '-l', P('logs', 'pitr-pgbr.log'), '-w', '-t', '3600', '-o', `-p ${ports.pgbackrest} -k ${dir}`, 'start'], { env: pgEnv(), cwd: work, label: 'pg_ctl start (pgbackrest restore)' });
      parts.pgCtlStartS = +s.wallS.toFixed(3);
      for (;;) {
        const q = await psqlAt(dir, ports.pgbackrest, 'SELECT pg_is_in_recovery()');
        if (q.code === 0 && q.stdout.trim() === 'f') break;
        if (Number(process.hrtime.bigint() - tStart) / 1e9 > 3600) throw new Error('not promoted within an hour');
        await sleep(100);
      }
    }
    const port = ports[t];
    const w = await psqlAt(dir, port, writeCheck);
    if (w.code !== 0) throw new Error(`write check failed on the restored server: ${w.stderr}`);
    const wallS = Number(process.hrtime.bigint() - tStart) / 1e9;
    const got = (await psqlAt(dir, port, sumsSql)).stdout.trim();
    parts.dataOk = got === expected[t];
    parts.got = got;
    parts.expected = expected[t];
    if (!parts.dataOk) log(`PITR ${t}: data at the target differs: got ${got}, expected ${expected[t]}`);
    stopDataDirSync(BIN, dir, 'fast');
    // Ferry's server log is inside the restored directory: kept beside pgBackRest's (--keep) for a look at the recovery.
    if (t === 'ferry' && existsSync(join(dir, 'ferry-restore.log'))) copyFileSync(join(dir, 'ferry-restore.log'), P('logs', 'pitr-ferry.log'));
    if (t === 'ferry' && existsSync(join(dir, 'ferry-fetch.log'))) copyFileSync(join(dir, 'ferry-fetch.log'), P('logs', 'pitr-ferry-fetch.log'));
    rmSync(dir, { recursive: true, force: true });
    return { wallS, rssKB: m.rssKB, userS: m.userS, sysS: m.sysS, info: parts };
  });

  // ---------------------------------------------------------------- 6 WAL push, one segment at a time
  const walFerryRepo = P('walbench-ferry-repo');
  const walFerryKey = P('walbench-ferry.key');
  await run([FERRY_BIN, 'init', '--key-file', walFerryKey], { env: ferryEnv(null, walFerryRepo, walFerryKey), cwd: work, label: 'ferry init (WAL step)' });
  const walPgbrConf = P('pgbr', 'walbench.conf');
  writeFileSync(walPgbrConf, pgbackrestConf({ repoPath: P('pgbr', 'walbench-repo'), cluster: B, logPath: P('pgbr', 'log'), lockPath: P('pgbr', 'lock'), cipherPass }));
  chownPg(P('pgbr'));
  await run(['pgbackrest', `--config=${walPgbrConf}`, '--stanza=bench', 'stanza-create'], { cwd: work, label: 'pgbackrest stanza-create (WAL step)' });
  warmCache(spool);
  spawnSync('sync');
  // ferryAsync: the same one-command-per-segment loop through bin/ferry-wal-push (async mode) into
  // a repository of its own. Its first call starts the push worker; each later call hands the
  // segment to that worker and waits for its done marker in the shell (no Node start-up per
  // segment). pgBackRest's row stays its plain archive-push, its fastest single command.
  const walFerryAsyncRepo = P('walbench-ferry-async-repo');
  const walFerryAsyncSpool = P('walbench-ferry-spool');
  await run([FERRY_BIN, 'init', '--key-file', walFerryKey], { env: ferryEnv(null, walFerryAsyncRepo, walFerryKey), cwd: work, label: 'ferry init (WAL step, async entry)' });
  const lat = { ferry: [], pgbackrest: [], ferryAsync: [] };
  const walErr = {};
  log(`WAL push: ${pushSegs.length} segments of 16 MiB, one command each, alternating the tools segment by segment (ferry, pgbackrest, and ferry-wal-push)`);
  for (const [i, n] of pushSegs.entries()) {
    const seq = i % 2 === 0 ? [...order, 'ferryAsync'] : ['ferryAsync', ...[...order].reverse()];
    for (const t of seq) {
      if (walErr[t]) continue;
      const argv =
        t === 'ferry'
          ? [FERRY_BIN, 'wal', 'push', join(spool, n)]
          : t === 'ferryAsync'
            ? [FERRY_PUSH_BIN, join(spool, n)]
            : ['pgbackrest', `--config=${walPgbrConf}`, '--stanza=bench', 'archive-push', join(spool, n)];
      const env = t === 'ferry' ? ferryEnv(null, walFerryRepo, walFerryKey) : t === 'ferryAsync' ? { ...ferryEnv(null, walFerryAsyncRepo, walFerryKey), FERRY_SPOOL: walFerryAsyncSpool } : pgEnv();
      try {
        const m = await run(argv, { env, cwd: work, label: `${t} push ${n}` });
        lat[t].push(m.wallS);
      } catch (e) {
        walErr[t] = String(e.message).slice(0, 2000);
        R.errors.push({ step: 'walPush', tool: t, error: walErr[t] });
        log(`WAL push ${t} FAILED at ${n}: ${walErr[t]}`);
      }
    }
  }
  const walStat = (t) => {
    if (walErr[t]) return { error: walErr[t] };
    const total = lat[t].reduce((a, b) => a + b, 0);
    const s = [...lat[t]].sort((a, b) => a - b);
    return {
      wallS: total,
      info: { segments: lat[t].length, segPerS: +(lat[t].length / total).toFixed(2), mibPerS: +((lat[t].length * 16) / total).toFixed(1), p50ms: +(quantile(s, 0.5) * 1000).toFixed(1), p95ms: +(quantile(s, 0.95) * 1000).toFixed(1), maxMs: +(s.at(-1) * 1000).toFixed(1) },
    };
  };
  try {
    process.kill(Number(readFileSync(join(walFerryAsyncSpool, 'push', 'worker.pid'), 'utf8')), 'SIGTERM');
  } catch {
    /* not running */
  }
  R.steps.walPush = { title: `WAL push, ${pushSegs.length} x 16 MiB, sequential`, ferry: walStat('ferry'), pgbackrest: walStat('pgbackrest') };
  R.steps.walPushAsync = { title: `WAL push, ${pushSegs.length} x 16 MiB, sequential, ferry through bin/ferry-wal-push`, ferry: walStat('ferryAsync'), pgbackrest: walStat('pgbackrest') };
  R.repo.walBench = { ferry: du(walFerryRepo), pgbackrest: du(P('pgbr', 'walbench-repo', 'archive')), segmentsBytes: pushSegs.length * 16 * MiB };
  log(`WAL push: ferry ${fmtS(R.steps.walPush.ferry.wallS)} s, ferry-wal-push ${fmtS(R.steps.walPushAsync.ferry.wallS)} s, pgbackrest ${fmtS(R.steps.walPush.pgbackrest.wallS)} s`);

  // ---------------------------------------------------------------- 7 archive catch-up (throughput)
  // What users see at a WAL burst: PostgreSQL runs archive_command once per segment, one after the
  // other, so the archive catches up at the rate of the whole command. Archiving is paused
  // (archive_command = ''; PostgreSQL keeps the segments and their .ready files), the same kind of
  // WAL as the PITR workload is written, then the tool's command is set and the time until
  // pg_stat_archiver shows the last segment archived is measured. Sync: `ferry wal push` /
  // `pgbackrest archive-push`; async: `ferry-wal-push` (= `ferry wal push --async`) / pgBackRest with
  // archive-async=y; both push ahead from the .ready files with parallel workers.
  const spools = { ferry: mk(P('ferry-spool')), pgbackrest: mk(P('pgbr', 'spool')) };
  const archiveCommand = {
    ferry: {
      sync: `FERRY_REPO=${ferryRepo} FERRY_KEY_FILE=${keyFile} ${FERRY_BIN} wal push %p`,
      async: `FERRY_REPO=${ferryRepo} FERRY_KEY_FILE=${keyFile} FERRY_SPOOL=${spools.ferry} ${FERRY_PUSH_BIN} %p`,
    },
    pgbackrest: {
      sync: `pgbackrest --config=${pgbrConf} --stanza=bench archive-push %p`,
      async: `pgbackrest --config=${pgbrConf} --stanza=bench --archive-async --spool-path=${spools.pgbackrest} archive-push %p`,
    },
  };
  R.info.catchUpCommands = archiveCommand;
  const setArchiveCommand = async (c, cmd) => {
    await c.sql(`ALTER SYSTEM SET archive_command = '${cmd.replace(/'/g, "''")}'`);
    await c.sql('SELECT pg_reload_conf()');
  };
  const drainBytes = o.catchUpSegments * 16 * MiB;
  for (const mode of ['sync', 'async']) {
    await step(`catchUp_${mode}`, `archive catch-up, ${mode}: ${o.catchUpSegments} segments written while archiving was paused`, async (t) => {
      const c = t === 'ferry' ? A : B;
      await c.switchAndWaitArchived();
      await setArchiveCommand(c, '');
      const lsn0 = await c.sql('SELECT pg_current_wal_lsn()');
      for (let i = 0; Number(await c.sql(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${lsn0}')`)) < drainBytes; i++) {
        const lo = 1 + ((i * rnd5) % (rows - rnd5));
        await c.sql(`UPDATE bench_random SET f = f + 1 WHERE id BETWEEN ${lo} AND ${lo + rnd5 - 1}`);
      }
      const last = await c.sql('SELECT pg_walfile_name(pg_switch_wal())');
      const ready = readdirSync(join(c.dataDir, 'pg_wal', 'archive_status')).filter((f) => f.endsWith('.ready')).length;
      const failedBefore = Number(await c.sql('SELECT failed_count FROM pg_stat_archiver'));
      spawnSync('sync');
      const t0 = process.hrtime.bigint();
      await setArchiveCommand(c, archiveCommand[t][mode]);
      for (;;) {
        const lastArchived = await c.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
        if (lastArchived.slice(0, 24) >= last) break;
        if (Number(process.hrtime.bigint() - t0) / 1e9 > 1800) throw new Error(`${t} ${mode}: ${last} not archived within 30 min (last archived ${lastArchived})`);
        await sleep(20);
      }
      const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
      const failed = Number(await c.sql('SELECT failed_count FROM pg_stat_archiver')) - failedBefore;
      await setArchiveCommand(c, archiveCommand[t].sync);
      return { wallS, info: { segments: ready, segPerS: +(ready / wallS).toFixed(1), failedCalls: failed, last } };
    });
  }
  // The async workers exit by themselves when idle; stop Ferry's now (pgBackRest's async process ends after each batch).
  try {
    process.kill(Number(readFileSync(join(spools.ferry, 'push', 'worker.pid'), 'utf8')), 'SIGTERM');
  } catch {
    /* not running */
  }

  // ---------------------------------------------------------------- end of this scale
  R.repo.final = repoSizes();
  R.pgbackrestInfo = await pgbrInfo().catch(() => null);
  for (const c of [A, B]) {
    const tail = c.logTail(400).split('\n').filter((l) => /FATAL|PANIC|ERROR|archive command failed|WARNING/.test(l));
    if (tail.length) R.info[`serverLog_${c === A ? 'a' : 'b'}`] = tail.slice(-20);
  }
  A.stop('fast');
  B.stop('fast');
  if (!o.keep) {
    rmSync(work, { recursive: true, force: true });
    workDirs.splice(workDirs.indexOf(work), 1);
  }
  return R;
}

// ------------------------------------------------------------------ report
function goal(kind, ratio) {
  if (ratio == null || !Number.isFinite(ratio)) return ['-', 'n/a'];
  return [GOALS[kind].text, ratio <= GOALS[kind].max ? 'met' : 'NOT MET'];
}

function report(R) {
  const s = R.steps;
  const w = (x) => (x && !x.error ? x.wallS : null);
  const cell = (x) => (x?.error ? 'FAILED' : fmtS(w(x)));
  const ratio = (a, b) => (a == null || b == null || b === 0 ? null : a / b);
  const rows = [['step', 'ferry s', 'pgbackrest s', 'ratio', 'goal', 'result']];
  const add = (key, label, goalKind) => {
    const r = ratio(w(s[key]?.ferry), w(s[key]?.pgbackrest));
    rows.push([label, cell(s[key]?.ferry), cell(s[key]?.pgbackrest), r == null ? '-' : r.toFixed(2), ...(goalKind ? goal(goalKind, r) : ['(info)', ''])]);
    return r;
  };
  const rFull = add('full', '1 full snapshot / backup', 'full');
  const rIncr = add('incr', '2 incremental after 5% rows changed', 'incr');
  const rRestore = add('restore', '3 restore latest, files only', 'restore');
  add('pitr', '4 PITR restore-to-ready (start+promote+write)');
  const wp = s.walPush;
  const rWal = add('walPush', `5 WAL push ${wp.ferry?.info?.segments ?? wp.pgbackrest?.info?.segments ?? ''} x 16 MiB, total`, 'walPush');
  const wi = (t, k) => wp[t]?.info?.[k] ?? null;
  rows.push(['  WAL push segments/s', wi('ferry', 'segPerS') ?? '-', wi('pgbackrest', 'segPerS') ?? '-', fmtRatio(wi('ferry', 'segPerS'), wi('pgbackrest', 'segPerS')), '(>= 1 wanted)', '']);
  rows.push(['  WAL push latency p50 ms', wi('ferry', 'p50ms') ?? '-', wi('pgbackrest', 'p50ms') ?? '-', fmtRatio(wi('ferry', 'p50ms'), wi('pgbackrest', 'p50ms')), '(info)', '']);
  rows.push(['  WAL push latency p95 ms', wi('ferry', 'p95ms') ?? '-', wi('pgbackrest', 'p95ms') ?? '-', fmtRatio(wi('ferry', 'p95ms'), wi('pgbackrest', 'p95ms')), '(info)', '']);
  const wa = s.walPushAsync;
  const rWalAsync = wa ? add('walPushAsync', '5b the same, ferry via bin/ferry-wal-push', 'walPush') : null;
  const wai = (k) => wa?.ferry?.info?.[k] ?? null;
  if (wa) rows.push(['  ferry-wal-push p50 / p95 ms', `${wai('p50ms') ?? '-'} / ${wai('p95ms') ?? '-'}`, `${wi('pgbackrest', 'p50ms') ?? '-'} / ${wi('pgbackrest', 'p95ms') ?? '-'}`, fmtRatio(wai('p50ms'), wi('pgbackrest', 'p50ms')), '(info: p50)', '']);
  const catchUp = {};
  for (const [i, mode] of ['sync', 'async'].entries()) {
    const c = s[`catchUp_${mode}`];
    catchUp[mode] = add(`catchUp_${mode}`, `${6 + i} archive catch-up, ${mode}, ${c?.ferry?.info?.segments ?? c?.pgbackrest?.info?.segments ?? ''} segments`, 'walPush');
    const ci = (t) => c?.[t]?.info?.segPerS ?? null;
    rows.push([`  segments/s (${mode})`, ci('ferry') ?? '-', ci('pgbackrest') ?? '-', fmtRatio(ci('ferry'), ci('pgbackrest')), '(>= 1 wanted)', '']);
  }

  const rp = R.repo;
  const gF = rp.afterIncr && rp.beforeIncr ? rp.afterIncr.ferry.total - rp.beforeIncr.ferry.total : null;
  const gP = rp.afterIncr && rp.beforeIncr ? rp.afterIncr.pgbackrest.total - rp.beforeIncr.pgbackrest.total : null;
  const gFb = rp.afterIncr ? rp.afterIncr.ferry.backup - rp.beforeIncr.ferry.backup : null;
  const gPb = rp.afterIncr ? rp.afterIncr.pgbackrest.backup - rp.beforeIncr.pgbackrest.backup : null;
  const rGrowth = ratio(gF, gP);
  const sizeRows = [['repository (du -sb)', 'ferry MiB', 'pgbackrest MiB', 'ratio', 'goal', 'result']];
  const srow = (label, f, p, goalKind) => sizeRows.push([label, fmtMiB(f), fmtMiB(p), fmtRatio(f, p), ...(goalKind ? goal(goalKind, ratio(f, p)) : ['', ''])]);
  srow('after full (backup + WAL archive)', rp.afterFull?.ferry.total, rp.afterFull?.pgbackrest.total);
  srow('  of which backup (no WAL)', rp.afterFull?.ferry.backup, rp.afterFull?.pgbackrest.backup);
  srow('growth by the incremental', gF, gP, 'growth');
  srow('  of which backup (no WAL)', gFb, gPb);
  srow('final (2 backups + all WAL)', rp.final?.ferry.total, rp.final?.pgbackrest.total);
  srow(`WAL push repo (${fmtMiB(rp.walBench?.segmentsBytes)} MiB of WAL)`, rp.walBench?.ferry, rp.walBench?.pgbackrest);

  const d = R.data;
  let out = `\nFerry vs ${pgbrVersion}, PostgreSQL: pgbench scale ${R.scale} (${d.pgbenchAccounts} accounts, ${fmtMiB(d.accountsTableBytes)} MiB) + bench_random ${d.randomRows} rows (${fmtMiB(d.randomTableBytes)} MiB); data dir ${fmtMiB(d.dataDirBytes)} MiB without pg_wal\n`;
  out += `zst level 3, process-max 2 (pgBackRest${o.pgbackrestCipher ? ', aes-256-cbc' : ', unencrypted'}); Ferry: zstd + AES-256-GCM, defaults${o.ferryNoFingerprint ? ' but --no-fingerprint' : ''}; ${machineInfo().cpus} cores; order ${order.join(' then ')}\n\n`;
  out += table(rows) + '(ratio = ferry / pgbackrest; < 1 means Ferry is faster / smaller)\n\n';
  out += table(sizeRows) + '\n';
  const fi = s.full?.ferry?.info?.stats;
  const ii = s.incr?.ferry?.info?.stats;
  const pf = s.full?.pgbackrest?.info?.info;
  const pi = s.incr?.pgbackrest?.info?.info;
  if (fi) out += `ferry full: ${fi.files} files, ${fmtMiB(fi.bytes)} MiB, ${fi.filesRead} read, new ${fmtMiB(fi.newBytes)} MiB -> stored ${fmtMiB(fi.storedBytes)} MiB; files + stop + archive wait ${fmtS(fi.durationMs / 1000)} s of ${fmtS(s.full.ferry.wallS)} s (fingerprint of ${s.full.ferry.info.fingerprintTables ?? 0} tables inside; its queries alone: ${R.info.fingerprintScanS} s)\n`;
  if (ii) out += `ferry incremental: ${ii.filesRead}/${ii.files} files read, new ${fmtMiB(ii.newBytes)} MiB -> stored ${fmtMiB(ii.storedBytes)} MiB; files + stop + archive wait ${fmtS(ii.durationMs / 1000)} s of ${fmtS(s.incr.ferry.wallS)} s; WAL archived during it: ferry ${fmtMiB(R.repo.afterIncr.ferry.wal - R.repo.beforeIncr.ferry.wal)} MiB, pgbackrest ${fmtMiB(R.repo.afterIncr.pgbackrest.wal - R.repo.beforeIncr.pgbackrest.wal)} MiB (compressed)\n`;
  if (pf) out += `pgbackrest full: size ${fmtMiB(pf.size)} MiB, repository ${fmtMiB(pf.repository?.delta)} MiB\n`;
  if (pi) out += `pgbackrest incr: delta ${fmtMiB(pi.delta)} MiB of ${fmtMiB(pi.size)} MiB, repository delta ${fmtMiB(pi.repository?.delta)} MiB\n`;
  const wd = R.info.walDuring ?? {};
  out += `WAL written by the server during the backup steps (full, incr): ferry's cluster ${fmtMiB(wd.full?.ferry)}, ${fmtMiB(wd.incr?.ferry)} MiB; pgbackrest's ${fmtMiB(wd.full?.pgbackrest)}, ${fmtMiB(wd.incr?.pgbackrest)} MiB\n`;
  out += `change: WAL ${fmtMiB(R.info.changeWalBytes?.a)} MiB; PITR: target ${R.info.pitr?.target}, ${fmtMiB(R.info.pitrWalBytes?.a)} MiB of WAL after the incremental to replay\n`;
  for (const t of ['ferry', 'pgbackrest']) {
    const p = s.pitr?.[t]?.info;
    if (p) out += `PITR ${t}: restore command ${fmtS(p.restoreCommandS)} s${p.pgCtlStartS != null ? `, pg_ctl start ${fmtS(p.pgCtlStartS)} s` : ''}${p.walFetch ? `, restore_command ${p.walFetch === 'async' ? 'bin/ferry-wal-fetch' : 'ferry wal fetch'}${p.prefetch ? ` (${p.prefetch.served} of ${p.prefetch.prefetched} prefetched segments asked for)` : ''}` : ''}; data at the target ${p.dataOk ? 'OK' : `WRONG (got ${p.got}, expected ${p.expected})`}\n`;
  }
  if (s.restore?.ferry?.roundsS) out += `restore rounds (the table shows the medians): ferry ${s.restore.ferry.roundsS.map(fmtS).join(', ')} s; pgbackrest ${(s.restore.pgbackrest?.roundsS ?? []).map(fmtS).join(', ')} s\n`;
  const floor = R.info.restoreDiskFloor;
  if (floor) {
    const best = Math.min(...floor.wallS);
    const over = (t) => (s.restore?.[t]?.wallS == null ? '-' : (s.restore[t].wallS / best).toFixed(2));
    out += `restore disk floor (dd of the ${fmtMiB(floor.bytes)} MiB restored, O_DIRECT + fsync): ${floor.wallS.map(fmtS).join(' s, ')} s; restore / best floor: ferry ${over('ferry')}, pgbackrest ${over('pgbackrest')}\n`;
  }
  const cpu = (x) => (x?.userS == null ? '-' : fmtS(x.userS + x.sysS));
  const rss = (x) => (x?.rssKB == null ? '-' : (x.rssKB / 1024).toFixed(0));
  out += `cpu s / peak RSS MiB (full, incr, restore): ferry ${['full', 'incr', 'restore'].map((k) => `${cpu(s[k]?.ferry)}/${rss(s[k]?.ferry)}`).join(', ')}; pgbackrest ${['full', 'incr', 'restore'].map((k) => `${cpu(s[k]?.pgbackrest)}/${rss(s[k]?.pgbackrest)}`).join(', ')}\n`;
  const goalsList = [
    ['full snapshot <= 0.7 x pgBackRest', rFull, GOALS.full.max],
    ['restore <= 0.7 x pgBackRest', rRestore, GOALS.restore.max],
    ['incremental time <= 0.3 x pgBackRest', rIncr, GOALS.incr.max],
    ['repository growth <= 0.3 x pgBackRest', rGrowth, GOALS.growth.max],
    ['WAL push at least as fast (one segment per command)', rWal, GOALS.walPush.max],
    ['WAL push at least as fast (one segment per command, bin/ferry-wal-push)', rWalAsync, GOALS.walPush.max],
    ['archive catch-up at least as fast (sync)', catchUp.sync, GOALS.walPush.max],
    ['archive catch-up at least as fast (async)', catchUp.async, GOALS.walPush.max],
  ].map(([name, r, max]) => ({ goal: name, ratio: r == null ? null : +r.toFixed(3), met: r != null && r <= max }));
  out += `goals: ${goalsList.map((g) => `${g.goal}: ${g.ratio == null ? 'n/a' : g.ratio.toFixed(2)} ${g.met ? 'met' : 'NOT MET'}`).join('; ')}\n`;
  for (const e of R.errors) out += `ERROR ${e.tool} in ${e.step}: ${e.error.split('\n').slice(0, 4).join(' | ')}\n`;
  for (const k of ['serverLog_a', 'serverLog_b']) if (R.info[k]) out += `server log ${k.slice(-1)} (${k.endsWith('a') ? 'ferry' : 'pgbackrest'}) warnings/errors: ${R.info[k].slice(-3).join(' | ')}\n`;
  R.goals = goalsList;
  return out;
}

// ------------------------------------------------------------------ run
const results = [];
let failed = false;
try {
  for (const scale of scales) {
    const R = await benchScale(scale);
    results.push(R);
    const text = report(R);
    process.stdout.write(text);
    if (R.errors.length || Object.values(R.steps.pitr ?? {}).some((x) => x?.info && !x.info.dataOk)) failed = true;
  }
} catch (e) {
  failed = true;
  log(`benchmark failed: ${e.stack ?? e}`);
} finally {
  stopAllSync(BIN);
}
const uptimeEnd = uptimeLine();
const loadLine = `uptime at start: ${uptimeStart}${quiet.waitedS ? `\nwaited ${quiet.waitedS} s for the load to drop (${quiet.quiet ? 'it did' : 'it did not'}): ${uptimeAfterWait}` : ''}\nuptime at end:   ${uptimeEnd}\n`;
process.stdout.write(loadLine);
if (results.length) {
  const file = writeResults('pg', {
    benchmark: 'pg',
    date: new Date().toISOString(),
    machine: { ...machineInfo(), uptimeStart, uptimeAfterWait, uptimeEnd, loadWait: quiet },
    ferry: { ...gitInfo(), command: o.useDist ? 'bin/ferry (dist/)' : 'private bundle of src/', bin: FERRY_BIN },
    pgbackrest: pgbrVersion,
    postgres: BIN,
    options: o,
    order,
    results: results.map((R) => ({
      ...R,
      steps: Object.fromEntries(Object.entries(R.steps).map(([k, v]) => [k, { title: v.title, ferry: v.ferry?.error ? v.ferry : { ...slim(v.ferry), info: v.ferry?.info }, pgbackrest: v.pgbackrest?.error ? v.pgbackrest : { ...slim(v.pgbackrest), info: v.pgbackrest?.info }, ratio: v.ferry?.wallS && v.pgbackrest?.wallS ? +(v.ferry.wallS / v.pgbackrest.wallS).toFixed(3) : null }])),
    })),
  });
  process.stdout.write(`results: ${file}\n`);
}
cleanup();
process.exitCode = failed ? 1 : 0;
