/**
 * `ferry repo copy` as a user runs it: fs -> fs with a SIGKILL mid-way and after
 * all packs (the copy stays a valid repository), a partial copy redone, a
 * destination holding another repository refused, two copiers at once, and
 * fs -> S3 (s3rver) -> fs, checked with `repo check --read-data` at each copy.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FERRY, childEnv, ferry, ferryOk } from '../harness/cli.ts';
import { runUntilPoint } from '../harness/kill.ts';
import { writeBigFile } from '../harness/repo.ts';
import { startS3Server, type S3Server } from '../harness/s3.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';

let tmp: TempDir;
let env: Record<string, string>;
let tree: string;

async function restoreDigest(repoUrl: string, extra: Record<string, string> = {}): Promise<string[]> {
  const out = join(tmp.path, `restored-${Math.random().toString(36).slice(2)}`);
  await ferryOk(['files', 'restore', 'latest', out], { env: { ...env, FERRY_REPO: repoUrl, ...extra } });
  return readdirSync(out, { recursive: true }).map(String).sort();
}

before(async () => {
  tmp = makeTempDir('ferry-copy-');
  const keyFile = join(tmp.path, 'key');
  env = { FERRY_REPO: join(tmp.path, 'src'), FERRY_KEY_FILE: keyFile };
  await ferryOk(['init', '--key-file', keyFile], { env });
  tree = join(tmp.path, 'tree');
  mkdirSync(tree);
  // Random bytes do not compress: ~40 MiB make three packs of 16 MiB.
  await writeBigFile(join(tree, 'big'), 40 * 1024 * 1024);
  for (let i = 0; i < 50; i++) writeFileSync(join(tree, `f${i}`), `file ${i}\n`.repeat(i + 1));
  await ferryOk(['files', 'snapshot', tree], { env });
  writeFileSync(join(tree, 'later'), 'a second snapshot');
  await ferryOk(['files', 'snapshot', tree], { env });
});

after(() => tmp?.cleanup());

function packs(dir: string): number {
  return readdirSync(join(dir, 'data'), { recursive: true }).filter((p) => /[0-9a-f]{64}$/.test(String(p))).length;
}

describe('repo copy', () => {
  it('killed after the first pack and before the index, stays valid; a restart completes and verifies', async (t) => {
    const dst = join(tmp.path, 'dst');
    await runUntilPoint(FERRY, ['repo', 'copy', '--to', dst], { point: 'repo-copy-pack', env: childEnv(env) });
    // Other copies in flight may finish before the SIGKILL lands.
    t.diagnostic(`killed after the first pack: ${packs(dst)} of ${packs(env.FERRY_REPO)} packs at the copy`);
    assert.ok(packs(dst) >= 1);
    const early = await ferry(['repo', 'check'], { env: { ...env, FERRY_REPO: dst } });
    assert.equal(early.code, 0, `the copy opens and checks after the kill: ${early.stderr}`);

    await runUntilPoint(FERRY, ['repo', 'copy', '--to', dst], { point: 'repo-copy-before-index', env: childEnv(env) });
    const mid = JSON.parse((await ferryOk(['repo', 'check', '--json'], { env: { ...env, FERRY_REPO: dst } })).stdout);
    assert.ok(mid.ok);
    assert.equal(mid.snapshots, 0, 'no manifest before its index');
    t.diagnostic(`killed before the index: ${mid.unindexedPacks.length} packs at the copy, none indexed yet`);

    const r = JSON.parse((await ferryOk(['repo', 'copy', '--to', dst, '--json'], { env })).stdout);
    assert.ok(r.caughtUp);
    assert.ok(r.present >= 3, 'what the killed runs copied is not copied again');
    assert.equal(r.lagAfter.snapshot.lagSeconds, 0);
    const check = JSON.parse((await ferryOk(['repo', 'check', '--read-data', '--json'], { env: { ...env, FERRY_REPO: dst } })).stdout);
    assert.ok(check.ok, JSON.stringify(check.problems));
    assert.equal(check.snapshots, 2);
    assert.deepEqual(await restoreDigest(dst), await restoreDigest(env.FERRY_REPO));
    const again = JSON.parse((await ferryOk(['repo', 'copy', '--to', dst, '--json'], { env })).stdout);
    assert.equal(again.copied, 0, 'a second run finds nothing to copy');
  });

  it('redoes a partial copy (a destination object of the wrong size)', async () => {
    const dst = join(tmp.path, 'dst');
    const packDir = join(dst, 'data');
    const one = readdirSync(packDir, { recursive: true }).map(String).find((p) => /[0-9a-f]{64}$/.test(p))!;
    truncateSync(join(packDir, one), 1000);
    const r = JSON.parse((await ferryOk(['repo', 'copy', '--to', dst, '--json'], { env })).stdout);
    assert.equal(r.replaced, 1);
    assert.ok((await ferryOk(['repo', 'check', '--read-data', '--json'], { env: { ...env, FERRY_REPO: dst } })).stdout.includes('"ok": true'));
  });

  it('two copiers to one destination at once leave a valid copy (no lock needed)', async () => {
    const dst = join(tmp.path, 'dst-twice');
    const [r1, r2] = await Promise.all([ferryOk(['repo', 'copy', '--to', dst, '--json'], { env }), ferryOk(['repo', 'copy', '--to', dst, '--json'], { env })]);
    assert.ok(JSON.parse(r1.stdout).caughtUp && JSON.parse(r2.stdout).caughtUp);
    const check = JSON.parse((await ferryOk(['repo', 'check', '--read-data', '--json'], { env: { ...env, FERRY_REPO: dst } })).stdout);
    assert.ok(check.ok, JSON.stringify(check.problems));
    assert.equal(check.snapshots, 2);
  });

  it('refuses a destination that holds another repository, and bad usage', async () => {
    const other = join(tmp.path, 'other');
    await ferryOk(['init', '--key-file', join(tmp.path, 'other.key')], { env: { FERRY_REPO: other } });
    const r = await ferry(['repo', 'copy', '--to', other], { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /holds another repository/);
    assert.equal((await ferry(['repo', 'copy'], { env })).code, 2);
    assert.equal((await ferry(['repo', 'copy', '--to', env.FERRY_REPO], { env })).code, 2);
  });
});

describe('repo copy to S3', () => {
  let s3: S3Server;
  before(async () => {
    s3 = await startS3Server('ferry-copy');
  });
  after(async () => {
    await s3?.stop();
  });

  it('copies fs -> s3 (endpoint from FERRY_COPY_S3_ENDPOINT); the copy passes repo check --read-data and restores', async () => {
    const url = `s3://${s3.bucket}/region-b`;
    const s3env = { AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey, AWS_REGION: 'us-east-1' };
    const r = JSON.parse((await ferryOk(['repo', 'copy', '--to', url, '--json'], { env: { ...env, ...s3env, FERRY_COPY_S3_ENDPOINT: s3.endpoint } })).stdout);
    assert.ok(r.caughtUp);
    assert.ok(r.created);
    const at = { ...env, ...s3env, FERRY_REPO: url, FERRY_S3_ENDPOINT: s3.endpoint };
    const check = JSON.parse((await ferryOk(['repo', 'check', '--read-data', '--json'], { env: at })).stdout);
    assert.ok(check.ok, JSON.stringify(check.problems));
    assert.equal(check.snapshots, 2);
    assert.deepEqual(await restoreDigest(url, at), await restoreDigest(env.FERRY_REPO));
    const st = JSON.parse((await ferryOk(['status', '--json', '--copy', url, '--copy-endpoint', s3.endpoint], { env: { ...env, ...s3env } })).stdout);
    assert.equal(st.copy.snapshots, 2);
    assert.equal(st.copy.lag.snapshot.lagSeconds, 0);

    // And back: s3 -> fs, the S3 copy as the source.
    const back = join(tmp.path, 'from-s3');
    const b = JSON.parse((await ferryOk(['repo', 'copy', '--to', back, '--json'], { env: at })).stdout);
    assert.ok(b.caughtUp);
    const check2 = JSON.parse((await ferryOk(['repo', 'check', '--read-data', '--json'], { env: { ...env, FERRY_REPO: back } })).stdout);
    assert.ok(check2.ok, JSON.stringify(check2.problems));
    assert.equal(check2.snapshots, 2);
  });
});
