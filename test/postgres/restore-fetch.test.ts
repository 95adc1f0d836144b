/**
 * How `ferry pg restore` sets up the restored server's restore_command, against real
 * PostgreSQL 15: by default bin/ferry-wal-fetch with its spool in the restored pg_wal,
 * whose fetch worker is stopped (and the spool removed) once a --start server has
 * promoted; `--wal-fetch sync` the one-process-per-file `ferry wal fetch`. Both recover
 * every marker; without --start the worker the server's first fetch starts is left to
 * exit by itself and the harness stops it by its pid.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ferry, ferryOk } from '../harness/cli.ts';
import { freePort, pgBinDir, pidAlive } from '../harness/pg.ts';
import { asPostgres } from '../harness/tmp.ts';
import { archivedCluster, markerIds, stopAtExit, stopDataDir, switchAndWaitArchived, type ArchivedCluster } from '../harness/archive.ts';
import { restoreSpool } from '../../src/postgres/restore.ts';
import { FETCH_WORKER_MARKER, runningWorkerPid, spoolLayout, waitWorkerGone, workerRunning } from '../../src/postgres/wal-async.ts';

const SEGMENTS = 10;
let a: ArchivedCluster;
const ids: number[] = [];

function restoreCommand(dir: string): string {
  const auto = readFileSync(join(dir, 'postgresql.auto.conf'), 'utf8');
  return /^restore_command = '(.*)'$/m.exec(auto)?.[1]?.replace(/''/g, "'") ?? '';
}

/**
 * `ferry pg restore` without --start into DIR, then the server started by hand, as the
 * restore's last line says. Returns its port, its fetch worker's pid file, and pg_ctl on DIR.
 * `serverEnv` is added to the server's environment, which restore_command and its fetch worker inherit.
 */
async function restoreStartedByHand(dir: string, serverEnv: Record<string, string> = {}): Promise<{ port: number; pidFile: string; pgCtl: (...args: string[]) => void }> {
  const port = await freePort();
  await ferryOk(['pg', 'restore', '--target-dir', dir, '--port', String(port)], { env: a.env });
  stopAtExit(dir);
  const pgCtl = (...args: string[]): void => void execFileSync(join(pgBinDir(), 'pg_ctl'), ['-D', dir, ...args], { ...asPostgres(), env: { ...process.env, ...serverEnv }, stdio: 'ignore' });
  pgCtl('-l', join(dir, 'start.log'), '-w', '-o', `-k ${dir}`, 'start');
  return { port, pidFile: spoolLayout(restoreSpool(dir)).fetchPid, pgCtl };
}

before(async () => {
  a = await archivedCluster();
  await a.cluster.psql('CREATE TABLE markers (id int PRIMARY KEY); CREATE TABLE filler (v text);');
  await ferryOk(['pg', 'snapshot', '--no-fingerprint'], { env: a.env });
  // SEGMENTS archived segments after the snapshot, a marker in each.
  for (let i = 1; i <= SEGMENTS; i++) {
    await a.cluster.query('INSERT INTO markers VALUES ($1)', [i]);
    await a.cluster.query("INSERT INTO filler SELECT repeat(md5(g::text), 8) FROM generate_series(1, 2000) g");
    ids.push(i);
    await switchAndWaitArchived(a.cluster);
  }
});

after(async () => {
  await a?.destroy();
});

describe('pg restore: the restored server fetches WAL', () => {
  it('through bin/ferry-wal-fetch by default, and stops its fetch worker once promoted', async () => {
    const dir = join(a.tmp.path, 'async');
    const port = await freePort();
    stopAtExit(dir);
    const r = await ferryOk(['pg', 'restore', '--target-dir', dir, '--start', '--port', String(port), '--json'], { env: a.env });
    const report = JSON.parse(r.stdout);
    try {
      assert.equal(report.walFetch, 'async');
      const spool = restoreSpool(dir);
      const rc = restoreCommand(dir);
      assert.match(rc, /\/bin\/ferry-wal-fetch' "%f" "%p" --spool '([^']+)' --ahead 8$/, rc);
      assert.equal(/--spool '([^']+)'/.exec(rc)?.[1], spool);
      assert.deepEqual(await markerIds(dir, port), ids, 'every archived marker is back');
      // The worker ran (its log is kept) and is gone, with its spool.
      const log = readFileSync(join(dir, 'ferry-fetch.log'), 'utf8');
      assert.match(log, /fetch worker \d+ started \(spool [^,]+\.ferry-spool, 8 ahead/, log);
      assert.match(log, /fetch worker \d+ exiting: prefetched \d+ file\(s\), \d+ of them asked for/, log);
      assert.ok(!existsSync(spool), 'the spool is removed after promotion');
      assert.ok(!workerRunning(spoolLayout(spool).fetchPid, FETCH_WORKER_MARKER));
      assert.ok(report.prefetch && Number.isInteger(report.prefetch.prefetched) && report.prefetch.served <= report.prefetch.prefetched, JSON.stringify(report.prefetch));
    } finally {
      stopDataDir(dir);
    }
  });

  it('with --wal-fetch sync, one `ferry wal fetch` per file and no worker', async () => {
    const dir = join(a.tmp.path, 'sync');
    const port = await freePort();
    stopAtExit(dir);
    const r = await ferryOk(['pg', 'restore', '--target-dir', dir, '--start', '--port', String(port), '--wal-fetch', 'sync', '--json'], { env: a.env });
    try {
      assert.equal(JSON.parse(r.stdout).walFetch, 'sync');
      assert.match(restoreCommand(dir), /\/bin\/ferry' wal fetch "%f" "%p"$/);
      assert.deepEqual(await markerIds(dir, port), ids);
      assert.ok(!existsSync(restoreSpool(dir)));
      assert.ok(!existsSync(join(dir, 'ferry-fetch.log')));
    } finally {
      stopDataDir(dir);
    }
  });

  it('without --start, the worker the first fetch starts outlives the server; a --delta restore over it stops it', async () => {
    const dir = join(a.tmp.path, 'nostart');
    const { port, pidFile, pgCtl } = await restoreStartedByHand(dir);
    let first: number;
    try {
      const control = (): string => execFileSync(join(pgBinDir(), 'pg_controldata'), ['-D', dir], { ...asPostgres(), env: { ...process.env, LC_ALL: 'C' }, encoding: 'utf8' });
      for (let i = 0; i < 600 && !/in production/.test(control()); i++) await new Promise((res) => setTimeout(res, 100));
      assert.deepEqual(await markerIds(dir, port), ids);
      assert.ok(workerRunning(pidFile, FETCH_WORKER_MARKER), 'the fetch worker is still there (it exits 30 s after the last fetch)');
      first = Number(readFileSync(pidFile, 'utf8'));
    } finally {
      pgCtl('-m', 'fast', '-w', 'stop');
    }
    assert.ok(workerRunning(pidFile, FETCH_WORKER_MARKER), 'the worker outlives the server');
    // Restoring over it again: the new recovery must not share the spool with the old worker.
    const r = JSON.parse((await ferryOk(['pg', 'restore', '--target-dir', dir, '--delta', '--start', '--port', String(port), '--json'], { env: a.env })).stdout);
    try {
      assert.equal(r.walFetch, 'async');
      assert.deepEqual(await markerIds(dir, port), ids);
      assert.throws(() => process.kill(first, 0), 'the earlier worker is gone');
      assert.ok(!workerRunning(pidFile, FETCH_WORKER_MARKER));
    } finally {
      stopDataDir(dir);
    }
  });

  it('without --start, the worker removes the spool when it exits after the server has promoted, keeping its log', async () => {
    const dir = join(a.tmp.path, 'nostart-promoted');
    const { port, pidFile, pgCtl } = await restoreStartedByHand(dir, { FERRY_WAL_IDLE_EXIT: '2' });
    const spool = restoreSpool(dir);
    try {
      const control = (): string => execFileSync(join(pgBinDir(), 'pg_controldata'), ['-D', dir], { ...asPostgres(), env: { ...process.env, LC_ALL: 'C' }, encoding: 'utf8' });
      for (let i = 0; i < 600 && !/in production/.test(control()); i++) await new Promise((res) => setTimeout(res, 100));
      assert.deepEqual(await markerIds(dir, port), ids);
      assert.ok(await waitWorkerGone(pidFile, FETCH_WORKER_MARKER, 30_000), 'the worker exits 2 s after the last fetch');
      for (let i = 0; i < 100 && existsSync(spool); i++) await new Promise((res) => setTimeout(res, 100));
      assert.ok(!existsSync(spool), 'the spool is gone once recovery has ended');
      const log = readFileSync(join(dir, 'ferry-fetch.log'), 'utf8');
      assert.match(log, /fetch worker \d+ exiting: prefetched \d+ file\(s\)/, log);
      assert.match(log, /removed the spool .*\.ferry-spool: recovery has ended/, log);
    } finally {
      pgCtl('-m', 'fast', '-w', 'stop');
    }
  });

  it('a fetch worker that exits while recovery is still going keeps the spool', async () => {
    const dir = join(a.tmp.path, 'recovering');
    await ferryOk(['pg', 'restore', '--target-dir', dir], { env: a.env });
    const spool = restoreSpool(dir);
    // The restore_command the server would run, by hand, with no server: recovery.signal is there.
    const rc = restoreCommand(dir);
    const listed = JSON.parse((await ferryOk(['wal', 'list', '--json'], { env: a.env })).stdout) as { name: string; kind: string }[];
    const first = listed.find((w) => w.kind === 'segment')!.name;
    execFileSync('/bin/sh', ['-c', rc.replace('"%f"', first).replace('"%p"', join(dir, 'pg_wal', 'RECOVERYXLOG'))], { ...asPostgres(), env: { ...process.env, FERRY_WAL_IDLE_EXIT: '1' }, stdio: 'ignore' });
    assert.ok(existsSync(join(dir, 'recovery.signal')));
    let pid: number | undefined;
    for (let i = 0; i < 100 && !(pid = runningWorkerPid(spoolLayout(spool).fetchPid, FETCH_WORKER_MARKER)); i++) await new Promise((res) => setTimeout(res, 50));
    assert.ok(pid, 'the fetch started a worker');
    // Its process gone, not only its pid file (the spool would be removed after that).
    for (let i = 0; i < 300 && pidAlive(pid!); i++) await new Promise((res) => setTimeout(res, 100));
    assert.ok(!pidAlive(pid!), 'the worker exits 1 s after the fetch');
    assert.ok(existsSync(spool), 'recovery has not ended: the spool stays');
    assert.ok(!existsSync(join(dir, 'ferry-fetch.log')));
  });

  it('the harness stops a restored directory\'s worker with its server', async () => {
    const dir = join(a.tmp.path, 'harness');
    const { pidFile } = await restoreStartedByHand(dir);
    try {
      for (let i = 0; i < 600 && !workerRunning(pidFile, FETCH_WORKER_MARKER); i++) await new Promise((res) => setTimeout(res, 100));
      assert.ok(workerRunning(pidFile, FETCH_WORKER_MARKER), 'recovery started a fetch worker');
    } finally {
      stopDataDir(dir);
    }
    assert.ok(await waitWorkerGone(pidFile, FETCH_WORKER_MARKER, 20_000), 'stopping the server by its data directory stops the worker too');
  });

  it('refuses an unknown --wal-fetch mode or --owner before writing anything', async () => {
    const dir = join(a.tmp.path, 'bad');
    const r = await ferry(['pg', 'restore', '--target-dir', dir, '--wal-fetch', 'fast'], { env: a.env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--wal-fetch takes async or sync, got "fast"/);
    const o = await ferry(['pg', 'restore', '--target-dir', dir, '--owner', 'no-such-user-ferry'], { env: a.env });
    assert.equal(o.code, 2, o.stderr);
    assert.equal(o.stderr.trim().split('\n')[0], 'ferry: error: no OS user named no-such-user-ferry', 'one clear line, nothing from id(1)');
    assert.ok(!existsSync(dir));
  });
});
