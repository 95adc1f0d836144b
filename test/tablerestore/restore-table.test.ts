/**
 * Issue 4 acceptance for `ferry pg restore-table` against a real PostgreSQL 15
 * cluster archiving into a Ferry repository: users <- applications (ON DELETE
 * CASCADE) plus an unrelated table; a snapshot; later users; a DELETE without
 * WHERE (the cascade wipes applications); later legitimate writes to all three.
 * Then: merge brings every deleted row back and keeps the later writes, leaving
 * the unrelated table as it was; replace refuses while dependent rows would be
 * lost and names them; new-table writes the side table; dry runs, bad names,
 * unknown schemas/tables and a time before any snapshot change nothing. Every
 * command's scratch directory is gone afterwards.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { childEnv, FERRY, ferry } from '../harness/cli.ts';
import { archivedCluster, switchAndWaitArchived, type ArchivedCluster } from '../harness/archive.ts';

let a: ArchivedCluster;
let scratchDir: string;
/** Before the later users (51..55) were added. */
let t0: string;
/** After them, just before the DELETE. */
let t1: string;
let snapshotId: string;
/** A pg_dump export taken at t1 (55 users). */
let exportId: string;

async function now(): Promise<string> {
  const [{ t }] = await a.cluster.query<{ t: string }>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS t");
  return t;
}

/** Contents of every table in the database, as text (equal means unchanged). */
async function fingerprint(): Promise<string> {
  const tables = await a.cluster.query<{ t: string }>("SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1");
  const parts: string[] = [];
  for (const { t } of tables) {
    const [{ h }] = await a.cluster.query<{ h: string | null }>(`SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) AS h FROM ${t} x`);
    parts.push(`${t}=${h}`);
  }
  const seqs = await a.cluster.query<{ s: string }>("SELECT string_agg(format('%s:%s', sequencename, last_value), ',' ORDER BY sequencename) AS s FROM pg_sequences");
  return parts.join('\n') + '\n' + seqs[0].s;
}

async function rows(sql: string): Promise<string[]> {
  return (await a.cluster.query<{ r: string }>(sql)).map((x) => x.r);
}

function restoreTable(args: string[], env: Record<string, string> = {}) {
  return ferry(['pg', 'restore-table', ...args, '--scratch-dir', scratchDir], { env: { ...a.env, ...env } });
}

function assertNoScratchLeft(): void {
  assert.deepEqual(readdirSync(scratchDir), [], 'the scratch directory is removed afterwards');
}

before(async () => {
  a = await archivedCluster();
  scratchDir = join(a.tmp.path, 'scratch');
  mkdirSync(scratchDir);
  await a.cluster.psql(`
    CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name text, joined timestamptz DEFAULT '2026-01-01');
    CREATE TABLE applications (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users ON DELETE CASCADE, job text, score numeric(5,2), tags text[]);
    CREATE TABLE unrelated (id int PRIMARY KEY, v text, b bytea);
    INSERT INTO users (email, name) SELECT 'u' || g || '@example.com', 'User ' || g FROM generate_series(1, 50) g;
    INSERT INTO applications (user_id, job, score, tags) SELECT 1 + g % 50, 'job ' || g, g / 7.0, ARRAY['a', 'b ' || g] FROM generate_series(1, 100) g;
    INSERT INTO unrelated SELECT g, 'v' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 20) g;
    CREATE SCHEMA "Odd; Schema";
    CREATE TABLE "Odd; Schema"."x"" y; DROP TABLE users --" (id int PRIMARY KEY, v text);
    INSERT INTO "Odd; Schema"."x"" y; DROP TABLE users --" VALUES (1, 'one'), (2, 'two');
    CREATE TABLE nokey (v int);
    CREATE TABLE events (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, what text, what_upper text GENERATED ALWAYS AS (upper(what)) STORED);
    INSERT INTO events (what) SELECT 'event ' || g FROM generate_series(1, 5) g;
  `);
  const snap = await ferry(['pg', 'snapshot', '--json'], { env: a.env });
  assert.equal(snap.code, 0, snap.stderr);
  snapshotId = JSON.parse(snap.stdout).id;
  t0 = await now();
  await a.cluster.psql(`
    INSERT INTO users (email, name) SELECT 'u' || g || '@example.com', 'Later ' || g FROM generate_series(51, 55) g;
    INSERT INTO applications (user_id, job) SELECT 51 + g % 5, 'later job ' || g FROM generate_series(1, 10) g;
  `);
  const exp = await ferry(['pg', 'export', '--json'], { env: a.env });
  assert.equal(exp.code, 0, exp.stderr);
  exportId = JSON.parse(exp.stdout).id;
  t1 = await now();
  await new Promise((r) => setTimeout(r, 50));
  // the accident
  await a.cluster.psql('DELETE FROM users');
  // later legitimate writes to all three tables
  await a.cluster.psql(`
    INSERT INTO users (email, name) VALUES ('new1@example.com', 'New 1'), ('new2@example.com', 'New 2'), ('new3@example.com', 'New 3');
    INSERT INTO applications (user_id, job) SELECT id, 'new job' FROM users;
    TRUNCATE events RESTART IDENTITY;
    CREATE TABLE later (id int PRIMARY KEY);
    UPDATE unrelated SET v = 'changed' WHERE id <= 5;
    DELETE FROM unrelated WHERE id = 20;
    INSERT INTO unrelated VALUES (21, 'v21', NULL);
  `);
  await switchAndWaitArchived(a.cluster);
});

after(async () => {
  await a?.destroy();
});

describe('pg restore-table', () => {
  it('refuses bad names, injections, unknown schemas and tables, and a time before any snapshot, changing nothing', async () => {
    const before = await fingerprint();
    const cases: { args: string[]; code: number; says: RegExp }[] = [
      { args: ['users;drop table unrelated', '--from-time', t1, '--mode', 'merge'], code: 2, says: /is not a table name: unexpected character ";"/ },
      { args: ['public.users; DROP TABLE unrelated --', '--from-time', t1, '--mode', 'merge'], code: 2, says: /is not a table name/ },
      { args: ['"users', '--from-time', t1, '--mode', 'merge'], code: 2, says: /quoted identifier is not closed/ },
      { args: ['a.b.c', '--from-time', t1, '--mode', 'merge'], code: 2, says: /more than two parts/ },
      { args: ['nosuch.users', '--from-time', t1, '--mode', 'merge'], code: 1, says: /schema "nosuch" does not exist in the live database/ },
      { args: ['public.nosuch', '--from-time', t1, '--mode', 'merge'], code: 1, says: /table public\.nosuch does not exist in the live database/ },
      { args: ['public."Users"', '--from-time', t1, '--mode', 'merge'], code: 1, says: /table public\."Users" does not exist/ },
      { args: ['public.nokey', '--from-time', t1, '--mode', 'merge'], code: 1, says: /public\.nokey has no primary key/ },
      // fails after the scratch server is up: it is still stopped and removed
      { args: ['public.later', '--from-time', t1, '--mode', 'merge'], code: 1, says: /table public\.later does not exist in the restored database "postgres" \(time .*, last transaction at/ },
      { args: ['public.users', '--from-time', '2001-01-01T00:00:00Z', '--mode', 'merge'], code: 2, says: /before the oldest snapshot's consistent point/ },
      { args: ['public.users', '--from-time', '2099-01-01T00:00:00Z', '--mode', 'merge'], code: 2, says: /is in the future/ },
      { args: ['public.users', '--from-time', 'yesterday', '--mode', 'merge'], code: 2, says: /"yesterday" is not a time/ },
      { args: ['public.users', '--from-snapshot', 'deadbeef', '--mode', 'merge'], code: 2, says: /no snapshot deadbeef/ },
      { args: ['public.users', '--from-time', t1, '--mode', 'upsert'], code: 2, says: /--mode is one of replace, merge, new-table/ },
      { args: ['public.users', '--from-time', t1, '--mode', 'merge', '--into', 'host=x options=-cfoo'], code: 2, says: /unsupported connection keyword "options"/ },
      { args: ['public.users', '--from-time', t1, '--mode', 'merge', '--cascade'], code: 2, says: /apply to --mode replace only/ },
      { args: ['public.users', '--mode', 'merge'], code: 2, says: /needs a source/ },
      { args: ['public.users', '--from-time', t1, '--from-snapshot', 'latest', '--mode', 'merge'], code: 2, says: /give one source/ },
    ];
    for (const c of cases) {
      const r = await restoreTable(c.args);
      assert.equal(r.code, c.code, `${c.args[0]}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, c.says);
      assert.equal(r.stderr.trim().split('\n').filter((l) => l.startsWith('ferry: error')).length, 1, 'one clear error');
      assert.doesNotMatch(r.stderr, /internal error|at .*\.ts:\d+/);
    }
    assert.equal(await fingerprint(), before, 'the live database is unchanged');
    assertNoScratchLeft();
  });

  it('--dry-run prints what merge would insert and changes nothing', async () => {
    const before = await fingerprint();
    const r = await restoreTable(['public.users', '--from-time', t1, '--mode', 'merge', '--dry-run', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const p = JSON.parse(r.stdout);
    assert.equal(p.table, 'public.users');
    assert.equal(p.restoredRows, 55);
    assert.equal(p.insert, 55);
    assert.equal(p.update, 0);
    assert.equal(p.delete, 0);
    assert.equal(p.dryRun, true);
    assert.equal(p.applied, false);
    assert.equal(await fingerprint(), before);
    // --into (keyword/value form) wins over the PG* environment
    const into = `host=${a.cluster.socketDir} port=${a.cluster.port} dbname=postgres user=postgres`;
    const bad = await restoreTable(['public.users', '--from-time', t1, '--mode', 'merge', '--dry-run', '--into', 'host=/nonexistent port=1 password=s3cret']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /cannot connect to the live database at host=\/nonexistent port=1 password=\*\*\*/);
    assert.doesNotMatch(bad.stderr, /s3cret/);
    // --from-snapshot restores the snapshot to its consistent point: the 50 users taken then
    const s = await restoreTable(['users', '--from-snapshot', snapshotId.slice(0, 12), '--mode', 'merge', '--dry-run', '--into', into], { PGHOST: '/nonexistent', PGPORT: '1' });
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /public\.users \(merge\): 50 row\(s\) restored; would insert 50, update 0, delete 0 \(0 unchanged\)\ndry run: nothing was changed/);
    // --from-export loads the export into a scratch cluster with pg_restore
    const e = await restoreTable(['public.users', '--from-export', exportId.slice(0, 12), '--mode', 'merge', '--dry-run', '--json']);
    assert.equal(e.code, 0, e.stderr);
    const ep = JSON.parse(e.stdout);
    assert.deepEqual([ep.restoredRows, ep.insert, ep.source.export], [55, 55, exportId]);
    const noExport = await restoreTable(['public.users', '--from-export', 'abcdef12', '--mode', 'merge']);
    assert.equal(noExport.code, 2);
    assert.match(noExport.stderr, /no export abcdef12/);
    assert.equal(await fingerprint(), before);
    assertNoScratchLeft();
  });

  it('merge of users then applications brings every deleted row back, keeps later writes, and leaves the unrelated table as it was', async () => {
    const unrelatedBefore = await rows("SELECT format('%s|%s|%s', id, v, b) AS r FROM unrelated ORDER BY id");
    const laterUsers = await rows("SELECT format('%s|%s|%s', id, email, name) AS r FROM users ORDER BY id");
    const laterApps = await rows("SELECT format('%s|%s|%s', id, user_id, job) AS r FROM applications ORDER BY id");
    assert.equal(laterUsers.length, 3);

    const u = await restoreTable(['public.users', '--from-time', t1, '--mode', 'merge', '--yes']);
    assert.equal(u.code, 0, u.stderr);
    assert.match(u.stdout, /public\.users \(merge\): 55 row\(s\) restored; inserted 55, updated 0, deleted 0/);
    const ap = await restoreTable(['public.applications', '--from-time', t1, '--mode', 'merge', '--json']);
    assert.equal(ap.code, 0, ap.stderr);
    assert.equal(JSON.parse(ap.stdout).insert, 110);

    const users = await rows("SELECT format('%s|%s|%s', id, email, name) AS r FROM users ORDER BY id");
    assert.equal(users.length, 58);
    for (const l of laterUsers) assert.ok(users.includes(l), `later user kept: ${l}`);
    for (let i = 1; i <= 55; i++) assert.ok(users.includes(`${i}|u${i}@example.com|${i <= 50 ? 'User' : 'Later'} ${i}`), `user ${i} back`);
    const apps = await rows("SELECT format('%s|%s|%s|%s|%s', id, user_id, job, score, tags) AS r FROM applications ORDER BY id");
    assert.equal(apps.length, 113);
    for (const l of laterApps) assert.ok(apps.some((x) => x.startsWith(l + '|')), `later application kept: ${l}`);
    assert.ok(apps.includes(`7|8|job 7|1.00|{a,"b 7"}`), 'numeric and array columns come back exactly');
    assert.deepEqual(await rows("SELECT format('%s|%s|%s', id, v, b) AS r FROM unrelated ORDER BY id"), unrelatedBefore, 'the unrelated table is untouched');
    // the sequences did not go backwards: a new user gets a fresh id
    await a.cluster.query("INSERT INTO users (email) VALUES ('after@example.com')");
    assertNoScratchLeft();
  });

  it('replace refuses while dependent rows would be lost, names them, and changes nothing', async () => {
    const before = await fingerprint();
    // at t0 users 51..55 and the new users did not exist: replacing would delete them and, by cascade, their applications
    const dependentApps = Number((await rows('SELECT count(*)::text AS r FROM applications WHERE user_id > 50'))[0]);
    assert.ok(dependentApps > 0);
    const dry = await restoreTable(['public.users', '--from-time', t0, '--mode', 'replace', '--dry-run', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    const p = JSON.parse(dry.stdout);
    assert.equal(p.delete, 9);
    assert.deepEqual(
      p.dependents.map((d: { table: string; action: string; rows: number }) => [d.table, d.action, d.rows]),
      [['public.applications', 'delete', dependentApps]],
    );
    assert.match(p.wouldRefuse, /replacing public\.users is refused/);
    const r = await restoreTable(['public.users', '--from-time', t0, '--mode', 'replace', '--yes']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`replacing public\\.users is refused because dependent rows would be lost or changed: ${dependentApps} row\\(s\\) of public\\.applications would be deleted \\(ON DELETE CASCADE\\)`));
    assert.match(r.stderr, /--include-dependents public\.applications/);
    assert.equal(await fingerprint(), before, 'the live database is unchanged');
    assertNoScratchLeft();
  });

  it('new-table writes TABLE_restored_<time> beside the live table with the restored rows', async () => {
    const before = await rows("SELECT format('%s|%s', id, email) AS r FROM users ORDER BY id");
    const r = await restoreTable(['public.users', '--from-time', t0, '--mode', 'new-table'], { FERRY_NOW: '2030-01-02T03:04:05Z' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /created public\.users_restored_20300102030405 with 50 row\(s\)/);
    const side = await rows("SELECT format('%s|%s|%s', id, email, name) AS r FROM users_restored_20300102030405 ORDER BY id");
    assert.equal(side.length, 50);
    assert.equal(side[0], '1|u1@example.com|User 1');
    assert.deepEqual(await rows("SELECT format('%s|%s', id, email) AS r FROM users ORDER BY id"), before, 'the live table is untouched');
    const again = await restoreTable(['public.users', '--from-time', t0, '--mode', 'new-table'], { FERRY_NOW: '2030-01-02T03:04:05Z' });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /users_restored_20300102030405 already exists/);
    await a.cluster.query('DROP TABLE users_restored_20300102030405');
    // quoted identifiers with quotes, spaces and semicolons are names, never SQL
    const odd = await restoreTable(['"Odd; Schema"."x"" y; DROP TABLE users --"', '--from-time', t1, '--mode', 'new-table'], { FERRY_NOW: '2030-01-02T03:04:05Z' });
    assert.equal(odd.code, 0, odd.stderr);
    assert.deepEqual(await rows(`SELECT format('%s|%s', id, v) AS r FROM "Odd; Schema"."x"" y; DROP TABLE users --_restored_20300102030405" ORDER BY id`), ['1|one', '2|two']);
    assert.deepEqual(await rows("SELECT count(*)::text AS r FROM users"), [String(before.length)]);
    assertNoScratchLeft();
  });

  it('replace of a table nobody references: dry run, refusal without --yes, then equal to the restored table', async () => {
    const dry = await restoreTable(['public.unrelated', '--from-time', t1, '--mode', 'replace', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /public\.unrelated \(replace\): 20 row\(s\) restored; would insert 1, update 5, delete 1 \(14 unchanged\)/);
    assert.match(dry.stdout, /dry run: nothing was changed/);
    const before = await fingerprint();
    const noYes = await restoreTable(['public.unrelated', '--from-time', t1, '--mode', 'replace']);
    assert.equal(noYes.code, 2);
    assert.match(noYes.stderr, /would delete 1 and update 5 row\(s\); add --yes/);
    assert.equal(await fingerprint(), before);
    const ok = await restoreTable(['public.unrelated', '--from-time', t1, '--mode', 'replace', '--yes']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(
      await rows("SELECT format('%s|%s|%s', id, v, b) AS r FROM unrelated ORDER BY id"),
      await rows("SELECT format('%s|%s|%s', g, 'v' || g, decode(md5(g::text), 'hex')) AS r FROM generate_series(1, 20) g ORDER BY g"),
    );
    assertNoScratchLeft();
  });

  it('merge after TRUNCATE ... RESTART IDENTITY writes identity columns as they were and moves the sequence past them', async () => {
    const r = await restoreTable(['public.events', '--from-time', t1, '--mode', 'merge']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /inserted 5/);
    await a.cluster.query("INSERT INTO events (what) VALUES ('after')");
    assert.deepEqual(await rows("SELECT format('%s|%s|%s', id, what, what_upper) AS r FROM events ORDER BY id"), [
      ...[1, 2, 3, 4, 5].map((i) => `${i}|event ${i}|EVENT ${i}`),
      '6|after|AFTER',
    ]);
    assertNoScratchLeft();
  });

  it('replace follows cascades to blocked rows deeper down, and with the dependents included makes the table equal', async () => {
    await a.cluster.psql(`
      CREATE TABLE reviews (id int PRIMARY KEY, application_id int REFERENCES applications ON DELETE RESTRICT, note text);
      INSERT INTO reviews SELECT 1, min(id), 'on a later application' FROM applications WHERE user_id > 50;
      INSERT INTO reviews SELECT 2, min(id), 'on an old application' FROM applications WHERE user_id <= 50;
    `);
    const dependentApps = Number((await rows('SELECT count(*)::text AS r FROM applications WHERE user_id > 50'))[0]);
    const dry = await restoreTable(['public.users', '--from-time', t0, '--mode', 'replace', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`public\\.applications: ${dependentApps} row\\(s\\) deleted \\(ON DELETE CASCADE\\) via applications_user_id_fkey \\(references public\\.users\\)`));
    assert.match(dry.stdout, /public\.reviews: 1 row\(s\) blocking \(RESTRICT \/ NO ACTION\) via reviews_application_id_fkey \(references public\.applications\)/);
    const before = await fingerprint();
    const partly = await restoreTable(['public.users', '--from-time', t0, '--mode', 'replace', '--yes', '--include-dependents', 'public.applications']);
    assert.equal(partly.code, 1);
    assert.match(partly.stderr, /1 row\(s\) of public\.reviews would block it/);
    assert.doesNotMatch(partly.stderr, /of public\.applications/);
    assert.equal(await fingerprint(), before);
    const ok = await restoreTable(['public.users', '--from-time', t0, '--mode', 'replace', '--yes', '--include-dependents', 'applications,public.reviews', '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).applied, true);
    assert.deepEqual(
      await rows("SELECT format('%s|%s|%s', id, email, name) AS r FROM users ORDER BY id"),
      await rows("SELECT format('%s|%s|%s', g, 'u' || g || '@example.com', 'User ' || g) AS r FROM generate_series(1, 50) g ORDER BY g"),
    );
    assert.deepEqual(await rows('SELECT count(*)::text AS r FROM applications WHERE user_id > 50'), ['0']);
    assert.deepEqual(await rows('SELECT note AS r FROM reviews'), ['on an old application']);
    assertNoScratchLeft();
  });

  it('an interrupted restore (SIGINT) stops the scratch server and removes its directory', async (t) => {
    const child = spawn(FERRY, ['pg', 'restore-table', 'public.users', '--from-time', t1, '--mode', 'merge', '--dry-run', '--scratch-dir', scratchDir], { env: childEnv(a.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    let running = false;
    let done = false;
    void exited.then(() => (done = true));
    while (!done && !running) {
      running = readdirSync(scratchDir).some((d) => existsSync(join(scratchDir, d, 'data', 'postmaster.pid')));
      if (!running) await new Promise((r) => setTimeout(r, 20));
    }
    if (running) child.kill('SIGINT');
    t.diagnostic(`interrupted while the scratch server was running: ${running}`);
    const code = await exited;
    if (running) {
      assert.equal(code, 130, stderr);
      assert.match(stderr, /SIGINT: stopping the scratch server and removing it/);
    }
    assertNoScratchLeft();
    const procs = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(scratchDir);
      } catch {
        return false;
      }
    });
    assert.deepEqual(procs, [], 'no server of the scratch directory is left running');
  });
});
