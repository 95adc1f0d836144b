/**
 * Issue 3 acceptance against real PostgreSQL 15: snapshots under pgbench load with
 * archive_command = ferry wal push, point-in-time restores that hold exactly the
 * markers committed by their target (checked with pg_amcheck), recovery to the end
 * of the archive after the data directory is deleted, tablespaces, and a timeline
 * switch (restore, promote, write, snapshot, restore again).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ferry, ferryOk } from '../harness/cli.ts';
import { freePort } from '../harness/pg.ts';
import { archivedCluster, markerIds, restoredClient, stopAtExit, stopDataDir, switchAndWaitArchived, type ArchivedCluster } from '../harness/archive.ts';
import { asPostgres, chownToPostgres } from '../harness/tmp.ts';
import { compareFingerprints, fingerprintCluster } from '../../src/postgres/fingerprint.ts';
import { parseLsn } from '../../src/postgres/walname.ts';

let a: ArchivedCluster;
const markers: { id: number; before: string; after: string }[] = [];
let tsDir: string;

async function marker(id: number): Promise<void> {
  const [{ t: beforeT }] = await a.cluster.query<{ t: string }>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS t");
  await a.cluster.query('INSERT INTO markers(id) VALUES ($1)', [id]);
  const [{ t: afterT }] = await a.cluster.query<{ t: string }>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS t");
  markers.push({ id, before: beforeT, after: afterT });
}

/** A time strictly between marker i's commit and marker i+1's start. */
function between(i: number): string {
  const t = (Date.parse(markers[i].after) + Date.parse(markers[i + 1].before)) / 2;
  return new Date(t).toISOString();
}

function amcheck(dataDir: string, port: number, binDir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(join(binDir, 'pg_amcheck'), ['-h', dataDir, '-p', String(port), '-U', 'postgres', '--install-missing', '--all'], { ...asPostgres(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`pg_amcheck exited ${code}: ${out}`))));
  });
}

before(async () => {
  a = await archivedCluster();
  tsDir = join(a.tmp.path, 'tablespace');
  mkdirSync(tsDir);
  await chownToPostgres(tsDir);
  await a.cluster.psql(`CREATE TABLESPACE extra LOCATION '${tsDir}'`);
  await a.cluster.psql('CREATE TABLE markers (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp()); CREATE TABLE in_ts (v text) TABLESPACE extra; INSERT INTO in_ts SELECT md5(g::text) FROM generate_series(1, 5000) g;');
  await a.cluster.pgbench(['-i', '-s', '3', '-q']);
});

after(async () => {
  await a?.destroy();
});

describe('point-in-time recovery', () => {
  const restored: string[] = [];
  after(() => restored.forEach(stopDataDir));

  it('snapshot under pgbench load, then markers; restores to times between them hold exactly the earlier markers', async (t) => {
    const load = a.cluster.pgbench(['-c', '2', '-T', '8', '-n']);
    const snap = JSON.parse((await ferryOk(['pg', 'snapshot', '--json'], { env: a.env })).stdout);
    assert.equal(snap.kind, 'postgres');
    assert.deepEqual(snap.meta.checksumFailures, []);
    for (let i = 1; i <= 6; i++) {
      await marker(i);
      await new Promise((r) => setTimeout(r, 250));
    }
    await load;
    await switchAndWaitArchived(a.cluster);
    const snaps = JSON.parse((await ferryOk(['pg', 'snapshots', '--json'], { env: a.env })).stdout);
    assert.equal(snaps.length, 1);
    for (const i of [0, 2, 4]) {
      const target = between(i);
      const dir = join(a.tmp.path, `pitr-${i}`);
      const port = await freePort();
      restored.push(dir);
      stopAtExit(dir);
      const r = await ferry(['pg', 'restore', '--target-dir', dir, '--to-time', target, '--start', '--port', String(port), '--no-archive', '--tablespace-map', `extra=${join(a.tmp.path, `ts-${i}`)}`, '--json'], { env: a.env });
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(r.stdout);
      t.diagnostic(`target ${target}: ${report.reached.stopLine ?? ''} (LSN ${report.reached.lsn})`);
      assert.deepEqual(await markerIds(dir, port), markers.slice(0, i + 1).map((m) => m.id));
      await amcheck(dir, port, a.cluster.binDir);
      const c = await restoredClient(dir, port);
      assert.equal((await c.query('SELECT count(*)::int AS n FROM in_ts')).rows[0].n, 5000, 'the tablespace table is there');
      await c.end();
      stopDataDir(dir);
    }
  });

  it('the data fingerprint is taken after the stop LSN and equals a restore of the snapshot to its LSN', async () => {
    await a.cluster.psql("CREATE TABLE IF NOT EXISTS docs (id int, body json); INSERT INTO docs SELECT g, json_build_object('g', g) FROM generate_series(1, 300) g;");
    const snap = JSON.parse((await ferryOk(['pg', 'snapshot', '--json'], { env: a.env })).stdout);
    const fp = snap.meta.fingerprint;
    assert.ok(parseLsn(fp.lsn) >= parseLsn(snap.meta.stopLsn), `fingerprint LSN ${fp.lsn} is not before the stop LSN ${snap.meta.stopLsn}`);
    const method = (table: string) => fp.tables.find((x: { table: string }) => x.table === table)?.method;
    assert.equal(method('pgbench_accounts'), 'record');
    assert.equal(method('docs'), 'text', 'json has no hash function: rows hashed as text');
    await a.cluster.query('INSERT INTO docs VALUES (0, null)');
    await switchAndWaitArchived(a.cluster);
    const dir = join(a.tmp.path, 'at-fingerprint');
    const port = await freePort();
    restored.push(dir);
    stopAtExit(dir);
    const r = await ferry(['pg', 'restore', '--target-dir', dir, '--snapshot', snap.id, '--to-lsn', fp.lsn, '--start', '--port', String(port), '--no-archive', '--tablespace-map', `extra=${join(a.tmp.path, 'ts-fp')}`, '--json'], { env: a.env });
    assert.equal(r.code, 0, r.stderr);
    const again = await fingerprintCluster(`postgresql://postgres@/postgres?host=${encodeURIComponent(dir)}&port=${port}`);
    assert.deepEqual(compareFingerprints(fp.tables, again.tables), []);
    stopDataDir(dir);
  });

  it('refuses targets it cannot reach, before writing anything', async () => {
    const dir = join(a.tmp.path, 'refused');
    const cases: [string[], RegExp][] = [
      [['--to-time', '2000-01-01T00:00:00Z'], /before the oldest snapshot/],
      [['--to-time', '2999-01-01T00:00:00Z'], /in the future/],
      [['--snapshot', 'abcdef12'], /no snapshot abcdef12/],
      [['--to-time', 'yesterday'], /not a time/],
    ];
    for (const [args, re] of cases) {
      const r = await ferry(['pg', 'restore', '--target-dir', dir, ...args], { env: a.env });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/, 'no stack trace');
    }
    const r = await ferry(['pg', 'restore', '--target-dir', a.cluster.dataDir], { env: a.env });
    assert.notEqual(r.code, 0, 'never over a live data directory');
  });

  it('after the data directory is deleted, restores to the end of the archive with every archived marker; then a new timeline', async (t) => {
    await marker(100);
    await switchAndWaitArchived(a.cluster);
    await a.cluster.stop('immediate');
    rmSync(a.cluster.dataDir, { recursive: true, force: true });
    const dir = join(a.tmp.path, 'recovered');
    const port = await freePort();
    restored.push(dir);
    stopAtExit(dir);
    const r = await ferry(['pg', 'restore', '--target-dir', dir, '--start', '--port', String(port), '--tablespace-map', `extra=${join(a.tmp.path, 'ts-recovered')}`, '--json'], { env: a.env });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    t.diagnostic(`data loss window: ${report.dataLossWindow}`);
    assert.match(report.dataLossWindow, /lost/);
    assert.deepEqual(await markerIds(dir, port), markers.map((m) => m.id));
    assert.ok(report.reached.timeline >= 2, 'promotion switched timeline');

    // Timeline 2: write, snapshot, restore again.
    const env = { ...a.env, PGHOST: dir, PGPORT: String(port), PGDATA: dir };
    const c = await restoredClient(dir, port);
    await c.query('INSERT INTO markers(id) VALUES (200)');
    await c.end();
    const snap2 = JSON.parse((await ferryOk(['pg', 'snapshot', '--json'], { env })).stdout);
    assert.equal(snap2.meta.timeline, report.reached.timeline);
    const c2 = await restoredClient(dir, port);
    await c2.query('INSERT INTO markers(id) VALUES (201)');
    await c2.query('SELECT pg_switch_wal()');
    await c2.end();
    await new Promise((r) => setTimeout(r, 3000));
    stopDataDir(dir);
    const dir2 = join(a.tmp.path, 'recovered-2');
    const port2 = await freePort();
    restored.push(dir2);
    stopAtExit(dir2);
    const r2 = await ferry(['pg', 'restore', '--target-dir', dir2, '--start', '--port', String(port2), '--no-archive', '--tablespace-map', `extra=${join(a.tmp.path, 'ts-recovered-2')}`, '--json'], { env: a.env });
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(await markerIds(dir2, port2), [...markers.map((m) => m.id), 200, 201]);
  });
});
