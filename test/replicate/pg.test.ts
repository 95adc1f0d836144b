/**
 * Issue 5 replication acceptance against real PostgreSQL 15 with archive_command =
 * ferry wal push: `repo copy --watch --interval 1` beside a pgbench run (the lag
 * sampled from `ferry status --json` and reported), a copier SIGKILLed mid-way and
 * restarted (then `repo check --read-data` on the copy), and, once the source
 * repository and data directory are deleted, PITR and recovery to the end of the
 * archive from the copy alone, with the restored server's restore_command on the copy.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { FERRY, childEnv, ferry, ferryOk } from '../harness/cli.ts';
import { freePort } from '../harness/pg.ts';
import { archivedCluster, markerIds, stopAtExit, stopDataDir, switchAndWaitArchived, type ArchivedCluster } from '../harness/archive.ts';
import { runUntilPoint } from '../harness/kill.ts';
import { chownToPostgres, makeTempDir, onExitStop, type TempDir } from '../harness/tmp.ts';

let a: ArchivedCluster;
let copyTmp: TempDir;
let copy: string;
const markers: { id: number; before: string; after: string }[] = [];
const restored: string[] = [];

const nowSql = "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS t";

async function marker(id: number): Promise<void> {
  const [{ t: b }] = await a.cluster.query<{ t: string }>(nowSql);
  await a.cluster.query('INSERT INTO markers(id) VALUES ($1)', [id]);
  const [{ t: af }] = await a.cluster.query<{ t: string }>(nowSql);
  markers.push({ id, before: b, after: af });
}

interface Lag {
  wal: { lagSeconds: number; missing: number };
  snapshot: { lagSeconds: number; missing: number };
}

async function sampleLag(): Promise<Lag> {
  const s = JSON.parse((await ferryOk(['status', '--json', '--copy', copy], { env: a.env })).stdout);
  return s.copy.lag as Lag;
}

function quantiles(xs: number[]): string {
  const s = [...xs].sort((p, q) => p - q);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))].toFixed(1);
  return `n=${s.length} min ${at(0)} p50 ${at(0.5)} p90 ${at(0.9)} max ${s[s.length - 1].toFixed(1)} s`;
}

before(async () => {
  a = await archivedCluster();
  copyTmp = makeTempDir('ferry-copy-pg-', { forPostgres: true });
  copy = join(copyTmp.path, 'region-b');
  await a.cluster.psql('CREATE TABLE markers (id int PRIMARY KEY)');
  await a.cluster.pgbench(['-i', '-s', '2', '-q']);
  await ferryOk(['pg', 'snapshot', '--no-fingerprint'], { env: a.env });
});

after(async () => {
  restored.forEach(stopDataDir);
  await a?.destroy();
  copyTmp?.cleanup();
});

describe('cross-region replication of a PostgreSQL repository', () => {
  it('repo copy --watch beside pgbench: the lag is sampled from ferry status and the copy catches up', async (t) => {
    const watcher: ChildProcess = spawn(FERRY, ['repo', 'copy', '--to', copy, '--watch', '--interval', '1', '--json'], {
      env: childEnv(a.env),
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const unregister = onExitStop(() => {
      try {
        process.kill(-watcher.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    });
    let out = '';
    let err = '';
    watcher.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    watcher.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<number | null>((r) => watcher.on('exit', (code) => r(code)));
    try {
      const load = a.cluster.pgbench(['-c', '2', '-T', '12', '-n']);
      const walLag: number[] = [];
      const snapLag: number[] = [];
      let snapshotTaken: Promise<unknown> | undefined;
      for (let i = 0; i < 12; i++) {
        await new Promise((r) => setTimeout(r, 800));
        await a.cluster.query('SELECT pg_switch_wal()');
        if (i === 3) snapshotTaken = ferryOk(['pg', 'snapshot', '--no-fingerprint'], { env: a.env });
        const lag = await sampleLag();
        walLag.push(lag.wal.lagSeconds);
        snapLag.push(lag.snapshot.lagSeconds);
      }
      await load;
      await snapshotTaken;
      await marker(1);
      await switchAndWaitArchived(a.cluster);
      t.diagnostic(`copy lag under pgbench (wal): ${quantiles(walLag)}`);
      t.diagnostic(`copy lag under pgbench (snapshots): ${quantiles(snapLag)}`);
      // Caught up: nothing missing within a generous deadline (no timing is asserted tighter than that).
      const deadline = Date.now() + 60_000;
      let lag = await sampleLag();
      while ((lag.wal.missing > 0 || lag.snapshot.missing > 0) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 500));
        lag = await sampleLag();
      }
      assert.equal(lag.wal.missing, 0, `the copy caught up with the WAL\n${err}`);
      assert.equal(lag.snapshot.missing, 0, 'the copy caught up with the snapshots');
      assert.equal(lag.wal.lagSeconds, 0);
      process.kill(watcher.pid!, 'SIGTERM');
      assert.equal(await exited, 0, `the watcher stops cleanly on SIGTERM\n${err}`);
    } finally {
      if (watcher.exitCode === null) process.kill(-watcher.pid!, 'SIGKILL');
      unregister();
    }
    const rounds = out.trim().split('\n').map((l) => JSON.parse(l));
    const copied = rounds.filter((r) => r.copied > 0);
    assert.ok(copied.length >= 2, 'several rounds copied something');
    assert.ok(rounds.every((r) => !r.error), 'no round failed');
    t.diagnostic(`${rounds.length} rounds, ${copied.length} copied something; lag seen by the copier before its rounds (wal): ${quantiles(rounds.map((r) => r.lagBefore.wal.lagSeconds))}`);
    const metrics = (await ferryOk(['status', '--metrics'], { env: { ...a.env, FERRY_COPY_TO: copy } })).stdout;
    assert.match(metrics, /^ferry_copy_lag_seconds\{.*kind="wal"\} 0$/m);
  });

  it('a copier SIGKILLed mid-way and restarted completes the copy; repo check --read-data passes on it', async (t) => {
    await a.cluster.pgbench(['-c', '2', '-t', '300', '-n']);
    await ferryOk(['pg', 'snapshot', '--no-fingerprint'], { env: a.env });
    await marker(2);
    await new Promise((r) => setTimeout(r, 300));
    await marker(3);
    await switchAndWaitArchived(a.cluster);
    const behind = await sampleLag();
    t.diagnostic(`with no copier running: wal lag ${behind.wal.lagSeconds.toFixed(1)} s (${behind.wal.missing} missing), snapshot lag ${behind.snapshot.lagSeconds.toFixed(1)} s`);
    assert.ok(behind.wal.missing > 0 && behind.wal.lagSeconds > 0, 'status shows the copy behind');
    assert.equal(behind.snapshot.missing, 1);
    const killed = await runUntilPoint(FERRY, ['repo', 'copy', '--to', copy], { point: 'repo-copy-object', hit: 2, env: childEnv(a.env) });
    assert.ok(killed.killed);
    const r = JSON.parse((await ferryOk(['repo', 'copy', '--to', copy, '--json'], { env: a.env })).stdout);
    t.diagnostic(`after the kill: ${r.present} objects already there, ${r.copied} copied by the restart`);
    assert.ok(r.caughtUp);
    assert.ok(r.copied >= 1);
    const check = JSON.parse((await ferryOk(['repo', 'check', '--read-data', '--json'], { env: { ...a.env, FERRY_REPO: copy } })).stdout);
    assert.ok(check.ok, JSON.stringify(check.problems));
    assert.equal(check.snapshots, 3);
  });

  it('with the source repository and data directory deleted, PITR from the copy alone reaches the same markers', async (t) => {
    await a.cluster.stop('immediate');
    rmSync(a.cluster.dataDir, { recursive: true, force: true });
    rmSync(a.repo, { recursive: true, force: true });
    await chownToPostgres(copyTmp.path);
    const env = { ...a.env, FERRY_REPO: copy };

    // To a time between markers 2 and 3.
    const target = new Date((Date.parse(markers[1].after) + Date.parse(markers[2].before)) / 2).toISOString();
    const dir = join(copyTmp.path, 'pitr');
    const port = await freePort();
    restored.push(dir);
    stopAtExit(dir);
    const r = await ferry(['pg', 'restore', '--target-dir', dir, '--to-time', target, '--start', '--port', String(port), '--no-archive', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    t.diagnostic(`PITR from the copy to ${target}: ${JSON.parse(r.stdout).reached.stopLine ?? ''}`);
    assert.deepEqual(await markerIds(dir, port), [1, 2]);
    const auto = readFileSync(join(dir, 'postgresql.auto.conf'), 'utf8');
    const rc = /restore_command = '(.*)'/.exec(auto)?.[1] ?? '';
    assert.match(rc, new RegExp(`FERRY_REPO='*${copy.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'* `), `restore_command points at the copy: ${rc}`);
    assert.ok(!rc.includes(a.repo), 'and not at the deleted source');
    stopDataDir(dir);

    // To the end of the archive: every marker.
    const dir2 = join(copyTmp.path, 'latest');
    const port2 = await freePort();
    restored.push(dir2);
    stopAtExit(dir2);
    const r2 = await ferry(['pg', 'restore', '--target-dir', dir2, '--start', '--port', String(port2), '--no-archive', '--json'], { env });
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(await markerIds(dir2, port2), markers.map((m) => m.id));
    stopDataDir(dir2);
  });
});
