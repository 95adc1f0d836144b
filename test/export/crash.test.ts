/**
 * A move to the cold tier killed (SIGKILL) at each step leaves the export readable,
 * byte for byte, both repositories pass `repo check`, and the next lifecycle run
 * finishes the move.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { childEnv, FERRY, ferryOk } from '../harness/cli.ts';
import { runUntilPoint } from '../harness/kill.ts';
import { startCluster, type TestCluster } from '../harness/pg.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';
import { DAY_MS } from '../../src/util/clock.ts';

let c: TestCluster;
let tmp: TempDir;
let env: Record<string, string>;
let cold: string;
const later = { FERRY_NOW: new Date(Date.now() + 91 * DAY_MS).toISOString() };

before(async () => {
  tmp = makeTempDir('ferry-excrash-', { forPostgres: true });
  const repo = join(tmp.path, 'repo');
  cold = join(tmp.path, 'cold');
  const keyFile = join(tmp.path, 'ferry.key');
  await ferryOk(['init', '--key-file', keyFile], { env: { FERRY_REPO: repo } });
  c = await startCluster();
  env = { FERRY_REPO: repo, FERRY_KEY_FILE: keyFile, FERRY_COLD_REPO: cold, ...c.env };
  await c.psql(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100000) g;`);
});

after(async () => {
  await c?.destroy();
  tmp?.cleanup();
});

for (const point of ['cold-before-index', 'cold-before-verify', 'cold-before-forget']) {
  it(`a move killed at ${point} loses nothing and the next run finishes it`, async () => {
    await c.psql(`INSERT INTO t VALUES ((SELECT max(id) + 1 FROM t), '${point}')`);
    const e = JSON.parse((await ferryOk(['pg', 'export', '--json'], { env })).stdout);
    await runUntilPoint(FERRY, ['pg', 'export', 'lifecycle', '--yes'], { point, env: childEnv({ ...env, ...later }) as Record<string, string>, timeoutMs: 120_000 });

    const listed = JSON.parse((await ferryOk(['pg', 'exports', '--json'], { env })).stdout).filter((x: { id: string }) => x.id === e.id);
    assert.equal(listed.length, 1);
    const out = join(tmp.path, `${point}.dump`);
    await ferryOk(['pg', 'export', 'get', e.id, '--out', out], { env });
    assert.equal(createHash('sha256').update(readFileSync(out)).digest('hex'), e.sha256);
    for (const repo of [env.FERRY_REPO, cold]) {
      const check = JSON.parse((await ferryOk(['repo', 'check', '--json', '--repo', repo], { env })).stdout);
      assert.equal(check.ok, true, `${repo}: ${JSON.stringify(check.problems)}`);
    }

    const r = JSON.parse((await ferryOk(['pg', 'export', 'lifecycle', '--yes', '--prune', '--json'], { env: { ...env, ...later } })).stdout);
    assert.deepEqual(r.moved.map((m: { id: string }) => m.id), [e.id]);
    const after = JSON.parse((await ferryOk(['pg', 'exports', '--json'], { env })).stdout);
    assert.ok(after.every((x: { tier: string }) => x.tier === 'cold'));
    await ferryOk(['pg', 'export', 'get', e.id, '--out', out, '--force'], { env });
    assert.equal(createHash('sha256').update(readFileSync(out)).digest('hex'), e.sha256);
    for (const repo of [env.FERRY_REPO, cold]) {
      const check = JSON.parse((await ferryOk(['repo', 'check', '--read-data', '--json', '--repo', repo], { env })).stdout);
      assert.equal(check.ok, true, `${repo}: ${JSON.stringify(check.problems)}`);
    }
  });
}
