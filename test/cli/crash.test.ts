/**
 * Crash safety (durability rule 5): `ferry files snapshot` killed with SIGKILL at
 * several points leaves a repository that `repo check` passes, and the next
 * snapshot succeeds and restores byte-identical. Prune beside a running snapshot
 * never deletes a blob the snapshot uses.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { FERRY, childEnv, ferry, ferryOk } from '../harness/cli.ts';
import { runUntilPoint } from '../harness/kill.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';
import { treeDigest } from '../harness/repo.ts';

let tmp: TempDir;
let src: string;

before(async () => {
  tmp = makeTempDir('ferry-crash-');
  src = join(tmp.path, 'src');
  await mkdir(join(src, 'sub'), { recursive: true });
  // About 70 MiB of incompressible data: several 16 MiB packs.
  for (let i = 0; i < 7; i++) await writeFile(join(src, `file-${i}.bin`), randomBytes(10 << 20));
  for (let i = 0; i < 200; i++) await writeFile(join(src, 'sub', `small-${i}.txt`), `small ${i}\n`.repeat(i + 1));
});

after(() => tmp?.cleanup());

const points: [name: string, hit: number][] = [
  ['fs-put-written', 3], // a pack's bytes in a temp file, not yet synced or renamed
  ['after-pack-upload', 2], // some packs stored, none indexed
  ['before-index', 1], // every pack stored, no index yet
  ['before-manifest', 1], // packs and index stored, no manifest
];

describe('SIGKILL during a snapshot', () => {
  for (const [point, hit] of points) {
    it(`at ${point} leaves a repository that checks clean, and the next snapshot succeeds`, async () => {
      const env = { FERRY_REPO: join(tmp.path, `repo-${point}`), FERRY_PASSWORD: 'pw' };
      await ferryOk(['init'], { env });
      await runUntilPoint(FERRY, ['files', 'snapshot', src], { point, hit, env: childEnv(env) as Record<string, string>, timeoutMs: 120_000 });
      const check = await ferry(['repo', 'check', '--json'], { env });
      assert.equal(check.code, 0, check.stderr);
      const report = JSON.parse(check.stdout);
      assert.equal(report.ok, true);
      assert.equal(report.snapshots, 0, 'no snapshot exists without its manifest');
      const snap = JSON.parse((await ferryOk(['files', 'snapshot', src, '--json'], { env })).stdout);
      const out = join(tmp.path, `out-${point}`);
      await ferryOk(['files', 'restore', snap.id, out], { env });
      assert.equal(await treeDigest(out), await treeDigest(src));
      await ferryOk(['prune'], { env });
      const after = JSON.parse((await ferryOk(['repo', 'check', '--read-data', '--json'], { env })).stdout);
      assert.equal(after.ok, true);
      assert.deepEqual(after.unindexedPacks, [], 'prune removed what the crash left');
    });
  }
});

describe('prune beside a snapshot', () => {
  it('never deletes a blob a running snapshot uses', async () => {
    const env = { FERRY_REPO: join(tmp.path, 'repo-prune'), FERRY_PASSWORD: 'pw' };
    await ferryOk(['init'], { env });
    // An old snapshot to forget, so prune has something to delete.
    const old = JSON.parse((await ferryOk(['files', 'snapshot', src, '--json'], { env })).stdout);
    await ferryOk(['forget', old.id], { env });
    let done = false;
    const snapshot = ferry(['files', 'snapshot', src, '--json'], { env }).finally(() => (done = true));
    const prunes: number[] = [];
    while (!done) {
      const r = await ferry(['prune'], { env });
      if (r.code !== 0) assert.match(r.stderr, /locked/, r.stderr);
      prunes.push(r.code);
    }
    const s = await snapshot;
    assert.equal(s.code, 0, s.stderr);
    const snap = JSON.parse(s.stdout);
    await ferryOk(['prune'], { env });
    const check = JSON.parse((await ferryOk(['repo', 'check', '--read-data', '--json'], { env })).stdout);
    assert.equal(check.ok, true);
    const out = join(tmp.path, 'out-prune');
    await ferryOk(['files', 'restore', snap.id, out], { env });
    assert.equal(await treeDigest(out), await treeDigest(src));
    assert.ok(prunes.length >= 1);
  });
});
