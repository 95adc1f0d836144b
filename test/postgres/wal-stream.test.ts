/**
 * `ferry wal stream` against real PostgreSQL 15: pg_receivewal supervised with a
 * replication slot; completed segments reach the repository within seconds and
 * byte-identical to pg_wal, the segment in progress is uploaded as `.partial`,
 * a dropped replication connection is survived without a gap, SIGTERM stops it
 * cleanly after the last upload, and --until-lsn stops it by itself.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FERRY, childEnv, ferryOk } from '../harness/cli.ts';
import { startCluster, type TestCluster } from '../harness/pg.ts';
import { makeTempDir, onExitStop, type TempDir } from '../harness/tmp.ts';
import { listWal } from '../../src/postgres/wal.ts';
import { parseLsn } from '../../src/postgres/walname.ts';
import { FsStorage } from '../../src/storage/fs.ts';

const SEG = 16 << 20;
let tmp: TempDir;
let cluster: TestCluster;
let env: Record<string, string>;
let repo: string;
let spool: string;
let stream: { child: ChildProcess; stderr: () => string; stdout: () => string; exit: Promise<number | null> } | undefined;

function startStream(args: string[]) {
  const child = spawn(process.execPath, [FERRY, 'wal', 'stream', ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const unregister = onExitStop(() => child.kill('SIGKILL'));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => (unregister(), resolve(code))));
  return { child, stderr: () => err, stdout: () => out, exit };
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n--- stream stderr ---\n${stream?.stderr().split('\n').slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stored(): Promise<Set<string>> {
  return new Set((await listWal(new FsStorage(repo))).map((w) => w.name));
}

async function fetch(name: string): Promise<Buffer> {
  const dest = join(tmp.path, `fetched-${name}`);
  await ferryOk(['wal', 'fetch', name, dest], { env });
  return readFileSync(dest);
}

async function writeSome(rows = 20_000): Promise<void> {
  await cluster.query(`INSERT INTO t SELECT md5(g::text) || repeat('x', 100) FROM generate_series(1, ${rows}) g`);
}

async function flushLsn(): Promise<string> {
  const [{ lsn }] = await cluster.query<{ lsn: string }>('SELECT pg_current_wal_flush_lsn()::text AS lsn');
  return lsn;
}

/** Waits until the repository's `<segment>.partial` (or the segment) holds pg_wal's bytes up to `lsn`. */
async function waitHolds(lsn: string, timeoutMs = 30_000): Promise<string> {
  const [{ seg }] = await cluster.query<{ seg: string }>('SELECT pg_walfile_name($1::pg_lsn) AS seg', [lsn]);
  const off = Number(parseLsn(lsn) % BigInt(SEG));
  return until(`${seg} up to ${lsn} in the repository`, async () => {
    const have = await stored();
    const name = have.has(seg) ? seg : have.has(`${seg}.partial`) ? `${seg}.partial` : undefined;
    if (!name) return undefined;
    const got = await fetch(name);
    const server = readFileSync(join(cluster.dataDir, 'pg_wal', seg));
    return got.subarray(0, off).equals(server.subarray(0, off)) ? name : undefined;
  }, timeoutMs);
}

before(async () => {
  tmp = makeTempDir('ferry-walstream-');
  repo = join(tmp.path, 'repo');
  spool = join(tmp.path, 'spool');
  const keyFile = join(tmp.path, 'ferry.key');
  await ferryOk(['init', '--key-file', keyFile], { env: { FERRY_REPO: repo } });
  cluster = await startCluster({ conf: ['wal_keep_size = 1GB'] });
  env = { FERRY_REPO: repo, FERRY_KEY_FILE: keyFile, ...cluster.env };
  await cluster.query('CREATE TABLE t (v text)');
});

after(async () => {
  stream?.child.kill('SIGKILL');
  await cluster?.destroy();
  tmp?.cleanup();
});

describe('wal stream', () => {
  let first: string;

  it('pushes completed segments within seconds, byte-identical to pg_wal, and the segment in progress as .partial', async () => {
    stream = startStream(['--slot', 'ferry_test', '--create-slot', '--spool', spool, '--partial-interval', '1']);
    await until('the slot to be active', async () => {
      const r = await cluster.query<{ active: boolean }>("SELECT active FROM pg_replication_slots WHERE slot_name = 'ferry_test'");
      return r[0]?.active;
    });
    await writeSome();
    [{ name: first }] = await cluster.query<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name');
    const t0 = Date.now();
    await until(`${first} in the repository`, async () => (await stored()).has(first));
    const seconds = (Date.now() - t0) / 1000;
    assert.ok(seconds < 15, `segment stored ${seconds} s after the switch`);
    assert.ok((await fetch(first)).equals(readFileSync(join(cluster.dataDir, 'pg_wal', first))), `${first} is byte-identical to pg_wal`);

    await writeSome();
    const name = await waitHolds(await flushLsn());
    assert.match(name, /\.partial$/, 'the segment in progress is stored as .partial');
  });

  it('survives a dropped replication connection without a gap', async () => {
    const killed = await cluster.query<{ ok: boolean }>("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_replication WHERE application_name = 'pg_receivewal'");
    assert.equal(killed.length, 1);
    await writeSome();
    const [{ name }] = await cluster.query<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name');
    await until(`${name} in the repository after the restart`, async () => (await stored()).has(name), 60_000);
    const have = await stored();
    for (let s = parseInt(first.slice(16), 16); s <= parseInt(name.slice(16), 16); s++) {
      const n = first.slice(0, 16) + s.toString(16).toUpperCase().padStart(8, '0');
      assert.ok(have.has(n), `${n} is in the repository (no gap)`);
    }
    assert.match(stream!.stderr(), /restarting in 1 s/);
  });

  it('stops cleanly on SIGTERM after uploading what it received', async () => {
    await writeSome(5000);
    const lsn = await flushLsn();
    await until('pg_receivewal to flush the last write', async () => {
      const r = await cluster.query<{ ok: boolean }>("SELECT flush_lsn >= $1::pg_lsn AS ok FROM pg_stat_replication WHERE application_name = 'pg_receivewal'", [lsn]);
      return r[0]?.ok;
    });
    stream!.child.kill('SIGTERM');
    const code = await Promise.race([stream!.exit, new Promise((r) => setTimeout(() => r('timeout'), 30_000))]);
    assert.equal(code, 0, stream!.stderr());
    assert.match(stream!.stdout(), /streamed \d+ WAL file/);
    await waitHolds(lsn, 5_000);
    const [slot] = await cluster.query<{ active: boolean }>("SELECT active FROM pg_replication_slots WHERE slot_name = 'ferry_test'");
    assert.equal(slot.active, false, 'the slot stays, inactive, keeping WAL for the next run');
  });

  it('--until-lsn resumes from the slot and stops by itself once that LSN is stored', async () => {
    await writeSome();
    const lsn = await flushLsn();
    // pg_receivewal stops once it receives WAL past --endpos: write a little more.
    await writeSome(10);
    const r = await ferryOk(['wal', 'stream', '--slot', 'ferry_test', '--spool', spool, '--until-lsn', lsn, '--json'], { env });
    const s = JSON.parse(r.stdout);
    assert.ok(s.segments + s.partials > 0, r.stdout);
    await waitHolds(lsn, 5_000);
  });
});
