/**
 * Issue 4, compliance exports: an export loaded with pg_restore into an empty
 * database equals the source at export time (their plain pg_dump outputs compare
 * equal); `export get` hands back pg_dump's bytes; a second weekly export of a
 * mostly unchanged database adds a small fraction of the first; a failing pg_dump
 * writes no export.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ferry, ferryOk } from '../harness/cli.ts';
import { startCluster, type TestCluster } from '../harness/pg.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';
import { plainDumpHash } from './dump.ts';

let c: TestCluster;
let tmp: TempDir;
let env: Record<string, string>;

const ROWS = 1_000_000;

before(async () => {
  tmp = makeTempDir('ferry-export-', { forPostgres: true });
  const repo = join(tmp.path, 'repo');
  const keyFile = join(tmp.path, 'ferry.key');
  await ferryOk(['init', '--key-file', keyFile], { env: { FERRY_REPO: repo } });
  c = await startCluster();
  env = { FERRY_REPO: repo, FERRY_KEY_FILE: keyFile, ...c.env };
  await c.psql('CREATE DATABASE app');
  await c.psql(
    `CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
     INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 1000) g;
     CREATE TABLE items (id bigint PRIMARY KEY, customer int REFERENCES customers, sku text, note text, amount numeric(12,2), created timestamptz);
     INSERT INTO items SELECT g, 1 + g % 1000, md5(g::text), md5((g * 7)::text) || md5((g * 13)::text), (g % 100000) / 100.0, timestamptz '2026-01-01' + g * interval '1 second'
       FROM generate_series(1, ${ROWS}) g;
     CREATE VIEW big_items AS SELECT * FROM items WHERE amount > 900;
     CREATE ROLE weak LOGIN;
     VACUUM ANALYZE;`,
    'app',
  );
});

after(async () => {
  await c?.destroy();
  tmp?.cleanup();
});

let first: { id: string; size: number; storedBytes: number; sha256: string };
let sourceAtExport: string;

it('pg export stores a pg_dump -Fc export; pg exports lists it', async () => {
  const r = await ferryOk(['pg', 'export', '--database', 'app', '--label', 'weekly', '--json'], { env });
  first = JSON.parse(r.stdout);
  sourceAtExport = await plainDumpHash(c, 'app', tmp.path);
  assert.match(first.id, /^[0-9a-f]{64}$/);
  const list = JSON.parse((await ferryOk(['pg', 'exports', '--json'], { env })).stdout);
  assert.equal(list.length, 1);
  assert.equal(list[0].id, first.id);
  assert.equal(list[0].database, 'app');
  assert.equal(list[0].tier, 'hot');
  assert.equal(list[0].size, first.size);
  assert.equal(list[0].storedBytes, first.storedBytes);
  assert.match(list[0].serverVersion, /^15\./);
  assert.match(list[0].pgDumpVersion, /^15\./);
  assert.deepEqual(list[0].labels, ['weekly']);
  assert.ok(first.size > 50 * 2 ** 20, `dump of ${first.size} bytes`);
  const human = (await ferryOk(['pg', 'exports'], { env })).stdout;
  assert.match(human, new RegExp(`${first.id.slice(0, 12)}.*app.*hot`));
});

it('pg export get writes the dump pg_restore reads, and refuses to overwrite', async () => {
  const out = join(tmp.path, 'app.dump');
  const r = JSON.parse((await ferryOk(['pg', 'export', 'get', first.id.slice(0, 8), '--out', out, '--json'], { env })).stdout);
  assert.equal(r.size, first.size);
  const bytes = readFileSync(out);
  assert.equal(bytes.length, first.size);
  assert.equal(createHash('sha256').update(bytes).digest('hex'), first.sha256);
  assert.equal(bytes.subarray(0, 5).toString(), 'PGDMP');
  chmodSync(out, 0o644);
  const list = await c.run('pg_restore', ['--list', out]);
  assert.match(list.stdout, /TABLE DATA public items/);
  assert.match(list.stdout, /VIEW public big_items/);

  const again = await ferry(['pg', 'export', 'get', first.id, '--out', out], { env });
  assert.equal(again.code, 1, again.stderr);
  assert.match(again.stderr, /already exists.*overwrite/);
  assert.match(again.stderr, /--force/);
  await ferryOk(['pg', 'export', 'get', 'latest', '--out', out, '--force'], { env });
  assert.equal(statSync(out).size, first.size);
  const missing = await ferry(['pg', 'export', 'get', 'abcdef12', '--out', join(tmp.path, 'x.dump')], { env });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /no export abcdef12/);
  assert.ok(!existsSync(join(tmp.path, 'x.dump')));
});

it('pg export restore loads into an empty database equal to the source at export time', async () => {
  await c.psql('CREATE DATABASE restored');
  const into = `postgresql://postgres@/restored?host=${encodeURIComponent(c.socketDir)}&port=${c.port}`;
  const r = JSON.parse((await ferryOk(['pg', 'export', 'restore', first.id, '--into', into, '--json'], { env })).stdout);
  assert.equal(r.database, 'restored');
  assert.equal(await plainDumpHash(c, 'restored', tmp.path), sourceAtExport, 'plain dumps of source and restore differ');

  // Not empty any more: refused, and nothing changes.
  const again = await ferry(['pg', 'export', 'restore', first.id, '--into', 'restored'], { env });
  assert.equal(again.code, 1, again.stderr);
  assert.match(again.stderr, /database "restored" is not empty \(it holds public\.big_items, public\.customers/);
  assert.equal(await plainDumpHash(c, 'restored', tmp.path), sourceAtExport);
  // --force replaces what the export holds.
  await c.psql('UPDATE customers SET name = \'changed\' WHERE id = 1', 'restored');
  await ferryOk(['pg', 'export', 'restore', first.id, '--into', `host=${c.socketDir} port=${c.port} dbname=restored`, '--force'], { env });
  assert.equal(await plainDumpHash(c, 'restored', tmp.path), sourceAtExport);
});

it('a second export after ~1.5% of rows changed stores a small fraction of the first', async (t) => {
  // A week of writes: the newest 1% of rows updated, 0.5% new rows, a run of old rows deleted.
  await c.psql(
    `UPDATE items SET amount = amount + 1, note = 'updated ' || note WHERE id > ${ROWS * 0.99};
     INSERT INTO items SELECT g, 1 + g % 1000, md5(g::text), md5((g * 7)::text), 1.00, timestamptz '2026-03-01' + g * interval '1 second'
       FROM generate_series(${ROWS + 1}, ${ROWS + ROWS * 0.005}) g;
     DELETE FROM items WHERE id BETWEEN 200000 AND 200100;`,
    'app',
  );
  const second = JSON.parse((await ferryOk(['pg', 'export', '--database', 'app', '--json'], { env })).stdout);
  const ratio = second.storedBytes / first.storedBytes;
  t.diagnostic(
    `dump ${(first.size / 2 ** 20).toFixed(1)} MiB -> ${(second.size / 2 ** 20).toFixed(1)} MiB; stored ${(first.storedBytes / 2 ** 20).toFixed(2)} MiB then ${(second.storedBytes / 2 ** 20).toFixed(2)} MiB: second/first = ${(100 * ratio).toFixed(1)}%`,
  );
  assert.ok(ratio < 0.15, `second export stored ${(100 * ratio).toFixed(1)}% of the first`);
  const list = JSON.parse((await ferryOk(['pg', 'exports', '--json'], { env })).stdout);
  assert.deepEqual(list.map((e: { id: string }) => e.id), [first.id, second.id]);
});

it('a failing pg_dump writes no export and says why', async () => {
  await c.psql('REVOKE ALL ON items FROM PUBLIC', 'app');
  const before = JSON.parse((await ferryOk(['pg', 'exports', '--json'], { env })).stdout).length;
  const r = await ferry(['pg', 'export', '--database', 'app'], { env: { ...env, PGUSER: 'weak' } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /pg_dump of database "app" failed \(exit code 1\): .*permission denied for table/);
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
  assert.equal(JSON.parse((await ferryOk(['pg', 'exports', '--json'], { env })).stdout).length, before);
  const nodb = await ferry(['pg', 'export', '--database', 'nosuchdb'], { env });
  assert.equal(nodb.code, 1);
  assert.match(nodb.stderr, /cannot connect to PostgreSQL .*nosuchdb.*does not exist/);
  const check = JSON.parse((await ferryOk(['repo', 'check', '--json'], { env })).stdout);
  assert.equal(check.ok, true);
});
