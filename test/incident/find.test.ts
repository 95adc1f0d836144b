/**
 * Issue 4 acceptance for `ferry incident find` against real PostgreSQL 15 archiving
 * into a repository: users <- applications (ON DELETE CASCADE) plus an unrelated
 * table; `DELETE FROM users` with no WHERE; later legitimate writes to all three;
 * a TRUNCATE and a DROP TABLE for good measure. The finder names the DELETE's
 * transaction (xid from txid_current(), commit time, LSN, rows in both tables), and
 * a restore to `--before-xid` of it gives every user back.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ferry, ferryOk } from '../harness/cli.ts';
import { freePort } from '../harness/pg.ts';
import { archivedCluster, restoredClient, stopAtExit, stopDataDir, switchAndWaitArchived, type ArchivedCluster } from '../harness/archive.ts';
import { readKeyFile } from '../../src/codec/keys.ts';
import { findIncidents } from '../../src/incident/find.ts';
import { noNames } from '../../src/incident/names.ts';
import { parseLsn } from '../../src/postgres/walname.ts';
import { Repository } from '../../src/repo/repository.ts';
import { FsStorage } from '../../src/storage/fs.ts';

const USERS = 240;
const APPS = 600;

let a: ArchivedCluster;
let xid: number;
let lsnBefore: string;
let lsnAfter: string;
let timeBefore: number;
let timeAfter: number;

interface Found {
  scanned: { segments: number };
  transactions: { xid: number; lsn: string; commitTime: string; tables: { name: string; op: string; rows: number | null }[] }[];
  proposal?: { xid: number; command: string };
}

async function find(args: string[], env = a.env): Promise<Found> {
  const r = await ferryOk(['incident', 'find', ...args, '--json'], { env });
  assert.equal(r.stderr, '', 'no warnings');
  return JSON.parse(r.stdout) as Found;
}

const utcNow = "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS t";

before(async () => {
  a = await archivedCluster();
  await a.cluster.psql(`
    CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
    CREATE TABLE applications (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users(id) ON DELETE CASCADE, note text);
    CREATE TABLE audit_log (id serial PRIMARY KEY, msg text);
    CREATE TABLE scratch (id int);
    CREATE TABLE gone (id int);
    INSERT INTO users SELECT g, 'user' || g || '@example.com' FROM generate_series(1, ${USERS}) g;
    INSERT INTO applications SELECT g, 1 + g % ${USERS}, 'application ' || g FROM generate_series(1, ${APPS}) g;
    INSERT INTO audit_log(msg) SELECT 'entry ' || g FROM generate_series(1, 50) g;
    INSERT INTO scratch SELECT generate_series(1, 150);
    INSERT INTO gone SELECT generate_series(1, 130);
  `);
  await ferryOk(['pg', 'snapshot', '--json'], { env: a.env });

  const c = await a.cluster.client();
  try {
    timeBefore = Date.parse((await c.query<{ t: string }>(utcNow)).rows[0].t);
    lsnBefore = (await c.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l;
    await c.query('BEGIN');
    xid = Number((await c.query<{ x: string }>('SELECT txid_current()::text AS x')).rows[0].x);
    await c.query('DELETE FROM users');
    // The commit goes to the next segment: the finder must follow a transaction across segments.
    await c.query('SELECT pg_switch_wal()');
    await c.query('COMMIT');
    lsnAfter = (await c.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l;
    timeAfter = Date.parse((await c.query<{ t: string }>(utcNow)).rows[0].t);
  } finally {
    await c.end();
  }
  // Another database, where a table of the same OID range loses its rows too.
  await a.cluster.psql('CREATE DATABASE shop');
  await a.cluster.psql('CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 120); DELETE FROM orders;', 'shop');
  // Later, legitimate writes to all three tables (small), then a TRUNCATE and a DROP.
  await a.cluster.psql(`
    INSERT INTO users VALUES (1001, 'new1@example.com'), (1002, 'new2@example.com');
    INSERT INTO applications VALUES (5001, 1001, 'after'), (5002, 1002, 'after');
    UPDATE applications SET note = 'edited' WHERE id = 5001;
    INSERT INTO audit_log(msg) VALUES ('after the incident');
    UPDATE audit_log SET msg = msg || '!' WHERE id <= 10;
    TRUNCATE scratch;
    DROP TABLE gone;
  `);
  await switchAndWaitArchived(a.cluster);
  for (let i = 0; i < 3; i++) {
    await a.cluster.psql(`INSERT INTO audit_log(msg) VALUES ('segment ${i}')`);
    await switchAndWaitArchived(a.cluster);
  }
});

after(async () => {
  await a?.destroy();
});

describe('incident find', () => {
  it('names the DELETE FROM users transaction with its cascade, time and LSN', async (t) => {
    const r = await find(['--table', 'public.users']);
    t.diagnostic(`scanned ${r.scanned.segments} segments; ${JSON.stringify(r.transactions)}`);
    assert.equal(r.transactions.length, 1, 'only the DELETE removed many users');
    const tx = r.transactions[0];
    assert.equal(tx.xid, xid);
    const ms = Date.parse(tx.commitTime);
    assert.ok(ms >= timeBefore - 1 && ms <= timeAfter + 1, `commit time ${tx.commitTime} is between ${new Date(timeBefore).toISOString()} and ${new Date(timeAfter).toISOString()}`);
    assert.ok(parseLsn(tx.lsn) > parseLsn(lsnBefore) && parseLsn(tx.lsn) < parseLsn(lsnAfter), `commit LSN ${tx.lsn} is between ${lsnBefore} and ${lsnAfter}`);
    assert.deepEqual(tx.tables, [
      { name: 'public.applications', op: 'delete', rows: APPS, database: 'postgres' },
      { name: 'public.users', op: 'delete', rows: USERS, database: 'postgres' },
    ]);
    assert.equal(r.proposal?.xid, xid);
    assert.match(r.proposal!.command, new RegExp(`--before-xid ${xid}\\b`));
  });

  it('lists the TRUNCATE and the DROP, and filters by operation and time', async () => {
    const all = await find([]);
    assert.deepEqual(
      all.transactions.map((x) => x.tables.map((c) => `${c.op} ${c.name.startsWith('rel ') ? 'rel' : c.name}`).join(', ')),
      ['delete public.applications, delete public.users', 'delete public.orders', 'truncate public.scratch', 'drop rel'],
      'the small later writes stay below the threshold',
    );
    // Both tables were created within the archived WAL, so their row counts are known.
    assert.deepEqual(
      (await find(['--op', 'truncate'])).transactions.map((x) => x.tables),
      [[{ name: 'public.scratch', op: 'truncate', rows: 150, database: 'postgres' }]],
    );
    assert.deepEqual(
      (await find(['--op', 'drop'])).transactions.map((x) => x.tables.map((c) => [c.name.replace(/\d+$/, 'N'), c.op, c.rows])),
      [[['rel 1663/5/N', 'drop', 130]]],
    );
    assert.equal((await find(['--op', 'update', '--table', 'users'])).transactions.length, 0);
    assert.equal((await find(['--table', 'users', '--until', new Date(timeBefore - 1000).toISOString()])).transactions.length, 0);
    assert.equal((await find(['--table', 'users', '--since', new Date(timeAfter + 1).toISOString()])).transactions.length, 0);
    const low = await find(['--table', 'public.audit_log', '--min-rows', '5']);
    assert.deepEqual(low.transactions[0]?.tables, [{ name: 'public.audit_log', op: 'update', rows: 10, database: 'postgres' }]);
    const shop = await find(['--table', 'orders']);
    assert.deepEqual(shop.transactions.map((x) => x.tables), [[{ name: 'public.orders', op: 'delete', rows: 120, database: 'shop' }]], 'names come from the right database');
  });

  it('prints a table for humans, and shows relation files when it may not ask the database', async (t) => {
    const human = await ferryOk(['incident', 'find', '--table', 'users'], { env: a.env });
    t.diagnostic(human.stdout);
    assert.match(human.stdout, new RegExp(`^${xid}\\s+\\S+\\s+\\S+\\s+public\\.applications\\s+delete\\s+${APPS}$`, 'm'));
    assert.match(human.stdout, /ferry pg restore --target-dir DIR --before-xid/);
    const bare = await find(['--no-names', '--min-rows', String(USERS)]);
    const tx = bare.transactions.find((x) => x.xid === xid);
    assert.ok(tx?.tables.every((c) => /^rel 1663\/\d+\/\d+$/.test(c.name)), JSON.stringify(tx));
  });

  it('finds the same in batches of two segments per pg_waldump run (records crossing batch boundaries)', async () => {
    const repo = await Repository.open(new FsStorage(a.repo), [readKeyFile(a.keyFile)]);
    const warnings: string[] = [];
    const r = await findIncidents(repo, { filter: { minRows: 100 }, since: timeBefore - 3600_000, names: noNames, batch: 2, warn: (l) => warnings.push(l) });
    assert.deepEqual(warnings, []);
    assert.ok(r.scanned.segments >= 6, `scanned ${r.scanned.segments} segments`);
    const tx = r.transactions.find((x) => x.xid === xid);
    assert.deepEqual(
      tx?.tables.map((c) => [c.op, c.rows]),
      [
        ['delete', APPS],
        ['delete', USERS],
      ],
    );
    assert.deepEqual(
      r.transactions.map((x) => x.tables[0].op),
      ['delete', 'delete', 'truncate', 'drop'],
    );
  });

  it('refuses bad input with exit 2 and one line', async () => {
    for (const [args, re] of [
      [['--op', 'frobnicate'], /--op takes one of delete, update, truncate, drop/],
      [['--since', 'yesterday'], /--since: "yesterday" is not a time/],
      [['--until', '2026-11-24 10:00'], /--until: time .* has no time zone/],
      [['--min-rows', 'many'], /--min-rows takes a whole number/],
      [['--table', 'a.b.c'], /--table takes SCHEMA.TABLE/],
    ] as [string[], RegExp][]) {
      const r = await ferry(['incident', 'find', ...args], { env: a.env });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });

  it('a restore to just before the transaction gives every user back', async () => {
    const dir = join(a.tmp.path, 'before-incident');
    const port = await freePort();
    stopAtExit(dir);
    try {
      const r = await ferry(['pg', 'restore', '--target-dir', dir, '--before-xid', String(xid), '--start', '--port', String(port), '--no-archive', '--json'], { env: a.env });
      assert.equal(r.code, 0, r.stderr);
      const c = await restoredClient(dir, port);
      try {
        const counts = (await c.query<{ u: number; ap: number }>('SELECT (SELECT count(*) FROM users)::int AS u, (SELECT count(*) FROM applications)::int AS ap')).rows[0];
        assert.deepEqual(counts, { u: USERS, ap: APPS });
      } finally {
        await c.end();
      }
    } finally {
      stopDataDir(dir);
    }
  });
});
