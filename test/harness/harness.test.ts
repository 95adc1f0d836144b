/**
 * Tests of the test harness itself: throwaway PostgreSQL clusters (start,
 * query, pgbench, restart, crash and recovery, archive_command environment)
 * and kill points (a child SIGKILLed exactly at a named point).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pgBinDir, startCluster, type TestCluster } from './pg.ts';
import { runUntilPoint } from './kill.ts';
import { isRoot, makeTempDir, postgresUser } from './tmp.ts';

const killpointModule = fileURLToPath(new URL('../../src/util/killpoint.ts', import.meta.url));

describe('pgBinDir', () => {
  it('finds the server binaries', () => {
    const dir = pgBinDir();
    for (const bin of ['postgres', 'initdb', 'pg_ctl', 'pgbench', 'psql']) assert.ok(existsSync(join(dir, bin)), bin);
  });

  it('fails clearly when FERRY_PG_BIN is wrong', () => {
    const saved = process.env.FERRY_PG_BIN;
    process.env.FERRY_PG_BIN = '/nonexistent/bin';
    try {
      assert.throws(() => pgBinDir(), /FERRY_PG_BIN=\/nonexistent\/bin does not contain/);
    } finally {
      if (saved === undefined) delete process.env.FERRY_PG_BIN;
      else process.env.FERRY_PG_BIN = saved;
    }
  });
});

describe('makeTempDir', () => {
  it('creates a directory and removes it on cleanup', () => {
    const t = makeTempDir('ferry-tmp-test-', { forPostgres: true });
    assert.ok(statSync(t.path).isDirectory());
    if (isRoot()) assert.equal(statSync(t.path).uid, postgresUser().uid);
    t.cleanup();
    assert.equal(existsSync(t.path), false);
    t.cleanup();
  });
});

describe('startCluster', () => {
  let c: TestCluster;
  const archive = makeTempDir('ferry-archive-', { forPostgres: true });

  before(async () => {
    // archive_command runs as postgres with the postmaster's environment: absolute paths only.
    c = await startCluster({
      initdbArgs: ['--data-checksums'],
      conf: ['archive_mode = on', `archive_command = 'cp %p "$FERRY_TEST_ARCHIVE/%f"'`],
      env: { FERRY_TEST_ARCHIVE: archive.path },
    });
  });

  after(async () => {
    await c?.destroy();
    archive.cleanup();
  });

  it('runs queries through node-postgres and psql', async () => {
    const rows = await c.query<{ n: number }>('select $1::int + 1 as n', [41]);
    assert.deepEqual(rows, [{ n: 42 }]);
    assert.equal((await c.psql('select 1; select 2;')).trim(), '1\n2');
    assert.equal((await c.query('show data_checksums'))[0].data_checksums, 'on');
    assert.equal((await c.query('show wal_level'))[0].wal_level, 'replica');
    assert.equal((await c.query('show fsync'))[0].fsync, 'on');
    if (isRoot()) assert.equal(statSync(c.dataDir).uid, postgresUser().uid);
  });

  it('exposes libpq env and a connection string', async () => {
    assert.equal(c.env.PGHOST, c.socketDir);
    assert.equal(c.env.PGPORT, String(c.port));
    const out = await c.run('psql', ['-XAtc', 'select current_user', c.connString]);
    assert.equal(out.stdout.trim(), 'postgres');
  });

  it('archives WAL with the env given to the postmaster', async () => {
    await c.query('select pg_switch_wal()');
    await c.query('create table t_arch(x int)');
    await c.query('select pg_switch_wal()');
    const deadline = Date.now() + 20_000;
    while (readdirSync(archive.path).length === 0) {
      assert.ok(Date.now() < deadline, `nothing archived; log:\n${c.logTail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(readdirSync(archive.path)[0], /^[0-9A-F]{24}$/);
  });

  it('runs pgbench, restarts, and recovers from kill -9', async () => {
    await c.pgbench(['-i', '-s', '1', '-q']);
    assert.equal((await c.query('select count(*)::int as n from pgbench_accounts'))[0].n, 100_000);

    c.appendConf(['work_mem = 7MB']);
    await c.restart();
    assert.equal(c.isRunning(), true);
    assert.equal((await c.query('show work_mem'))[0].work_mem, '7MB');
    await c.query('create table survivor(x int)');
    await c.query('insert into survivor values (1), (2), (3)');

    const pid = Number(readFileSync(join(c.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    await c.kill9();
    assert.equal(c.isRunning(), false);
    await assert.rejects(c.query('select 1'));

    await c.start();
    const newPid = Number(readFileSync(join(c.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    assert.notEqual(newPid, pid);
    assert.equal((await c.query('select count(*)::int as n from survivor'))[0].n, 3);
    assert.match(c.logTail(200), /database system was interrupted|not properly shut down/);
    const amcheck = await c.run('pg_amcheck', ['--install-missing', '--heapallindexed', '-d', 'postgres']);
    assert.equal(amcheck.stdout.trim(), '');

    await c.stop();
    assert.equal(c.isRunning(), false);
    await c.stop(); // a no-op when stopped
    const control = await c.run('pg_controldata', [c.dataDir]);
    assert.match(control.stdout, /Database cluster state:\s+shut down/);
    assert.match(control.stdout, /Data page checksum version:\s+1/);
    await c.start();
  });

  it('starts an existing data directory', async () => {
    await assert.rejects(startCluster({ dataDir: c.dataDir }), /already running in/);
    assert.equal(c.isRunning(), true);
    await c.stop();
    const other = await startCluster({ dataDir: c.dataDir, conf: ['archive_mode = off'] });
    try {
      assert.notEqual(other.port, c.port);
      assert.equal((await other.query('select count(*)::int as n from survivor'))[0].n, 3);
    } finally {
      await other.destroy();
    }
    assert.ok(existsSync(c.dataDir), 'an external data dir is not removed by destroy()');
    await c.start();
  });
});

describe('runUntilPoint', () => {
  const script = (points: string[]): string =>
    [
      `const { killPoint, killPointSync } = await import(${JSON.stringify(killpointModule)});`,
      `console.log('start');`,
      ...points,
      `console.log('done');`,
    ].join('\n');
  const node = (code: string): string[] => ['--import', 'tsx', '--input-type=module', '-e', code];

  it('kills the child at the named point', async () => {
    const r = await runUntilPoint(
      process.execPath,
      node(script([`await killPoint('a');`, `console.log('after-a');`, `await killPoint('b');`, `console.log('after-b');`])),
      { point: 'b' },
    );
    assert.equal(r.killed, true);
    assert.match(r.stdout, /start\nafter-a\n/);
    assert.doesNotMatch(r.stdout, /after-b|done/);
    assert.match(r.stderr, /FERRY_KILL_POINT b\n/);
  });

  it('kills at the n-th hit and in synchronous code', async () => {
    const loop = `for (let i = 0; i < 5; i++) { killPointSync('loop'); console.log('i=' + i); }`;
    const r = await runUntilPoint(process.execPath, node(script([loop])), { point: 'loop', hit: 3 });
    assert.match(r.stdout, /i=0\ni=1\n$/);
  });

  it('rejects with the output when the child never reaches the point', async () => {
    await assert.rejects(
      runUntilPoint(process.execPath, node(script([`await killPoint('a');`])), { point: 'zzz' }),
      (err: Error) => /before reaching kill point "zzz"/.test(err.message) && /done/.test(err.message),
    );
  });

  it('times out', async () => {
    await assert.rejects(
      runUntilPoint(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { point: 'never', timeoutMs: 300 }),
      /did not reach kill point "never" within 300 ms/,
    );
  });
});
