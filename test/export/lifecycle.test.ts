/**
 * Issue 4, export lifecycle: with the clock moved 91 and then 731 days, older
 * exports are in the cold tier and then gone; younger exports are untouched and
 * restorable; a cold export restores with its data intact; data shared between
 * exports survives moves, deletes and prune in both tiers (`repo check --read-data`).
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ferry, ferryOk } from '../harness/cli.ts';
import { startCluster, type TestCluster } from '../harness/pg.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';
import { DAY_MS } from '../../src/util/clock.ts';
import { plainDumpHash } from './dump.ts';

let c: TestCluster;
let tmp: TempDir;
let env: Record<string, string>;
let cold: string;
const t0 = Date.now();
const at = (days: number) => ({ FERRY_NOW: new Date(t0 + days * DAY_MS).toISOString() });

interface Listed {
  id: string;
  tier: string;
  time: string;
}

async function exportsNow(extra: Record<string, string> = {}): Promise<Listed[]> {
  return JSON.parse((await ferryOk(['pg', 'exports', '--json'], { env: { ...env, ...extra } })).stdout);
}

async function takeExport(days: number): Promise<{ id: string; hash: string; sha256: string }> {
  const r = JSON.parse((await ferryOk(['pg', 'export', '--database', 'app', '--json'], { env: { ...env, ...(days ? at(days) : {}) } })).stdout);
  return { id: r.id, sha256: r.sha256, hash: await plainDumpHash(c, 'app', tmp.path) };
}

async function restoredHash(id: string, db: string): Promise<string> {
  await c.psql(`CREATE DATABASE ${db}`);
  await ferryOk(['pg', 'export', 'restore', id, '--into', db], { env });
  return plainDumpHash(c, db, tmp.path);
}

before(async () => {
  tmp = makeTempDir('ferry-explc-', { forPostgres: true });
  const repo = join(tmp.path, 'repo');
  cold = join(tmp.path, 'cold');
  const keyFile = join(tmp.path, 'ferry.key');
  await ferryOk(['init', '--key-file', keyFile], { env: { FERRY_REPO: repo } });
  c = await startCluster();
  env = { FERRY_REPO: repo, FERRY_KEY_FILE: keyFile, FERRY_COLD_REPO: cold, ...c.env, PGDATABASE: 'app' };
  await c.psql('CREATE DATABASE app');
  // ~20 MB of dump: several chunks that later exports share.
  await c.psql(
    `CREATE TABLE events (id bigint PRIMARY KEY, kind text, body text);
     INSERT INTO events SELECT g, 'k' || (g % 7), md5(g::text) || md5((g + 1)::text) FROM generate_series(1, 250000) g;`,
    'app',
  );
});

after(async () => {
  await c?.destroy();
  tmp?.cleanup();
});

let e1: { id: string; hash: string; sha256: string };
let e2: { id: string; hash: string; sha256: string };
let e3: { id: string; hash: string; sha256: string };

it('at 91 days the older export moves to the cold tier; the younger stays', async () => {
  e1 = await takeExport(0);
  await c.psql("INSERT INTO events SELECT g, 'new', md5(g::text) FROM generate_series(250001, 252000) g", 'app');
  e2 = await takeExport(60);

  // `ferry expire` with a snapshot rule leaves exports to their own lifecycle.
  const expired = JSON.parse((await ferryOk(['expire', '--keep-last', '1', '--yes', '--json'], { env: { ...env, ...at(61) } })).stdout);
  assert.equal(JSON.stringify(expired).includes(e1.id), false, 'expire does not plan exports');
  assert.equal((await exportsNow()).length, 2);

  // No terminal, no --yes: refused, nothing changes.
  const refused = await ferry(['pg', 'export', 'lifecycle'], { env: { ...env, ...at(91) } });
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /would move 1 export\(s\) to the cold tier and delete 0 but was not told to/);
  const dry = JSON.parse((await ferryOk(['pg', 'export', 'lifecycle', '--dry-run', '--json'], { env: { ...env, ...at(91) } })).stdout);
  assert.deepEqual(
    dry.decisions.map((d: { id: string; action: string }) => [d.id, d.action]),
    [
      [e1.id, 'move'],
      [e2.id, 'keep'],
    ],
  );
  assert.ok(!existsSync(cold), 'a dry run creates no cold tier');
  assert.deepEqual((await exportsNow()).map((e) => e.tier), ['hot', 'hot']);

  const human = (await ferryOk(['pg', 'export', 'lifecycle', '--yes'], { env: { ...env, ...at(91) } })).stdout;
  assert.match(human, new RegExp(`${e1.id.slice(0, 12)} .* hot +to cold +older than 90 days`));
  assert.match(human, /moved 1 export\(s\) to the cold tier/);
  const list = await exportsNow();
  assert.deepEqual(list.map((e) => [e.id, e.tier]), [
    [e1.id, 'cold'],
    [e2.id, 'hot'],
  ]);
  // Without the cold tier configured only the hot export is visible.
  assert.deepEqual((await exportsNow({ FERRY_COLD_REPO: '' })).map((e) => e.id), [e2.id]);
  // Running again changes nothing.
  const again = JSON.parse((await ferryOk(['pg', 'export', 'lifecycle', '--yes', '--json'], { env: { ...env, ...at(91) } })).stdout);
  assert.deepEqual([again.moved, again.deleted], [[], []]);
});

it('a cold export is handed back and restores with its data intact', async () => {
  const out = join(tmp.path, 'e1.dump');
  const got = JSON.parse((await ferryOk(['pg', 'export', 'get', e1.id, '--out', out, '--json'], { env })).stdout);
  assert.equal(got.tier, 'cold');
  assert.equal(createHash('sha256').update(readFileSync(out)).digest('hex'), e1.sha256);
  assert.equal(await restoredHash(e1.id, 'r1'), e1.hash);
  const noCold = await ferry(['pg', 'export', 'get', e1.id, '--out', join(tmp.path, 'x.dump')], { env: { ...env, FERRY_COLD_REPO: '' } });
  assert.equal(noCold.code, 2);
  assert.match(noCold.stderr, /no export .* in .*repo/);
  assert.match(noCold.stderr, /cold tier/);
});

it('at 731 days the oldest is gone, the next moved, the youngest untouched; both tiers check after prune', async () => {
  await c.psql("UPDATE events SET body = 'changed' WHERE id > 251000", 'app');
  e3 = await takeExport(700);
  const r = JSON.parse((await ferryOk(['pg', 'export', 'lifecycle', '--yes', '--prune', '--json'], { env: { ...env, ...at(731) } })).stdout);
  assert.deepEqual(r.deleted, [e1.id]);
  assert.deepEqual(r.moved.map((m: { id: string }) => m.id), [e2.id]);
  // E2 shares most of its data with E1, deleted from cold in the same run: nothing of it was lost.
  assert.ok(r.moved[0].blobsShared > 0, 'the move reuses the blobs already in cold');
  assert.deepEqual((await exportsNow()).map((e) => [e.id, e.tier]), [
    [e2.id, 'cold'],
    [e3.id, 'hot'],
  ]);
  for (const repo of [env.FERRY_REPO, cold]) {
    const check = JSON.parse((await ferryOk(['repo', 'check', '--read-data', '--json', '--repo', repo], { env })).stdout);
    assert.equal(check.ok, true, JSON.stringify(check.problems));
    assert.deepEqual(check.unindexedPacks, []);
  }
  assert.equal(await restoredHash(e2.id, 'r2'), e2.hash);
  assert.equal(await restoredHash(e3.id, 'r3'), e3.hash);
  const gone = await ferry(['pg', 'export', 'get', e1.id, '--out', join(tmp.path, 'gone.dump')], { env });
  assert.equal(gone.code, 2);
  assert.match(gone.stderr, /no export/);
});

it('refuses a cold tier that is the repository itself (under any name) or another repository', async () => {
  const same = await ferry(['pg', 'exports'], { env: { ...env, FERRY_COLD_REPO: env.FERRY_REPO } });
  assert.equal(same.code, 2, same.stderr);
  assert.match(same.stderr, /the cold tier .* is the repository itself/);
  // Another name for the same place: refused before anything moves (the move would end by forgetting the only manifest).
  const alias = join(tmp.path, 'alias');
  symlinkSync(env.FERRY_REPO, alias);
  const before = await exportsNow();
  const aliased = await ferry(['pg', 'export', 'lifecycle', '--yes', '--cold-after-days', '0'], { env: { ...env, ...at(731), FERRY_COLD_REPO: alias } });
  assert.equal(aliased.code, 2, aliased.stderr);
  assert.match(aliased.stderr, /is the same place as the repository/);
  assert.deepEqual(await exportsNow(), before);

  const other = join(tmp.path, 'other');
  await ferryOk(['init'], { env: { FERRY_REPO: other, FERRY_KEY_FILE: env.FERRY_KEY_FILE } });
  const r = await ferry(['pg', 'exports'], { env: { ...env, FERRY_COLD_REPO: other } });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /holds another Ferry repository/);
});

it('a key slot added to the repository later opens the cold tier too', async () => {
  await ferryOk(['key', 'add'], { env: { ...env, FERRY_NEW_PASSWORD: 'rotated passphrase' } });
  const { FERRY_KEY_FILE: _unused, ...rest } = env;
  const list = JSON.parse((await ferryOk(['pg', 'exports', '--json'], { env: { ...rest, FERRY_PASSWORD: 'rotated passphrase' } })).stdout);
  assert.deepEqual(list.map((e: Listed) => [e.id, e.tier]), [
    [e2.id, 'cold'],
    [e3.id, 'hot'],
  ]);
  const out = join(tmp.path, 'rotated.dump');
  await ferryOk(['pg', 'export', 'get', e2.id, '--out', out], { env: { ...rest, FERRY_PASSWORD: 'rotated passphrase' } });
  assert.equal(createHash('sha256').update(readFileSync(out)).digest('hex'), e2.sha256);
});
