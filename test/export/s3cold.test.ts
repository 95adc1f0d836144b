/** The cold tier on an S3 bucket (a real S3 protocol server): move, get, restore, check. */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ferryOk } from '../harness/cli.ts';
import { startCluster, type TestCluster } from '../harness/pg.ts';
import { startS3Server, type S3Server } from '../harness/s3.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';
import { DAY_MS } from '../../src/util/clock.ts';
import { plainDumpHash } from './dump.ts';

let c: TestCluster;
let tmp: TempDir;
let s3: S3Server;
let env: Record<string, string>;

before(async () => {
  tmp = makeTempDir('ferry-exs3-', { forPostgres: true });
  s3 = await startS3Server();
  const repo = join(tmp.path, 'repo');
  const keyFile = join(tmp.path, 'ferry.key');
  await ferryOk(['init', '--key-file', keyFile], { env: { FERRY_REPO: repo } });
  c = await startCluster();
  env = { FERRY_REPO: repo, FERRY_KEY_FILE: keyFile, FERRY_S3_ENDPOINT: s3.endpoint, FERRY_COLD_REPO: `s3://${s3.bucket}/cold/exports`, ...c.env };
  await c.psql(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 50000) g;`);
});

after(async () => {
  await c?.destroy();
  await s3?.stop();
  tmp?.cleanup();
});

it('an export moved to an S3 cold tier is handed back and restores equal', async () => {
  const e = JSON.parse((await ferryOk(['pg', 'export', '--json'], { env })).stdout);
  const source = await plainDumpHash(c, 'postgres', tmp.path);
  const r = JSON.parse((await ferryOk(['pg', 'export', 'lifecycle', '--yes', '--json'], { env: { ...env, FERRY_NOW: new Date(Date.now() + 91 * DAY_MS).toISOString() } })).stdout);
  assert.deepEqual(r.moved.map((m: { id: string }) => m.id), [e.id]);
  const list = JSON.parse((await ferryOk(['pg', 'exports', '--json'], { env })).stdout);
  assert.deepEqual(list.map((x: { id: string; tier: string }) => [x.id, x.tier]), [[e.id, 'cold']]);
  const out = join(tmp.path, 'e.dump');
  await ferryOk(['pg', 'export', 'get', e.id, '--out', out], { env });
  assert.equal(createHash('sha256').update(readFileSync(out)).digest('hex'), e.sha256);
  await c.psql('CREATE DATABASE restored');
  await ferryOk(['pg', 'export', 'restore', e.id, '--into', 'restored'], { env });
  assert.equal(await plainDumpHash(c, 'restored', tmp.path), source);
  const check = JSON.parse((await ferryOk(['repo', 'check', '--read-data', '--json', '--repo', env.FERRY_COLD_REPO], { env })).stdout);
  assert.equal(check.ok, true, JSON.stringify(check.problems));
  assert.equal(check.snapshots, 1);
});
