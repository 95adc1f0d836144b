/**
 * Acceptance for `ferry objects`, scaled down (the full size is bench/objects.mjs):
 * objects on a real S3 protocol server (s3rver) and in a directory; snapshot;
 * delete, overwrite and add some; snapshot. The second snapshot reads only what
 * changed and records the deletions; every deleted object and every older version
 * restores byte-identical; a prefix restored at a time between the snapshots matches
 * the listing at that time exactly (no later objects, the old contents).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { ferry, ferryOk } from '../harness/cli.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';
import { startS3Server, type S3Server } from '../harness/s3.ts';
import { Repository } from '../../src/repo/repository.ts';
import { FsStorage } from '../../src/storage/fs.ts';
import { DirectorySource, type ObjectSource } from '../../src/objects/source.ts';
import { S3Source, assetClient } from '../../src/objects/s3source.ts';
import { chooseVersion, objectVersions, readNode } from '../../src/objects/history.ts';
import { dirDigests, mutate, only, populate, sha, type DataSet, type Mutation } from './dataset.ts';

let tmp: TempDir;
let s3: S3Server;
let env: Record<string, string>;
let config: string;

const CASES = {
  s3: { n: 600, min: 1024, max: 200 * 1024, k: 30, prefix: 'uploads/' },
  dir: { n: 1000, min: 1024, max: 200 * 1024, k: 30, prefix: '' },
} as const;

before(async () => {
  tmp = makeTempDir('ferry-objects-');
  s3 = await startS3Server('ferry-objects');
  config = join(tmp.path, 'ferry.yaml');
  await mkdir(join(tmp.path, 'dir'));
  await writeFile(
    config,
    [
      'assets:',
      `  - { name: resumes, type: s3, bucket: ${s3.bucket}, prefix: ${CASES.s3.prefix}, endpoint: "${s3.endpoint}" }`,
      `  - { name: uploads, type: directory, path: "${join(tmp.path, 'dir')}" }`,
      '',
    ].join('\n'),
  );
  env = { FERRY_REPO: join(tmp.path, 'repo'), FERRY_PASSWORD: 'pw', FERRY_CONFIG: config, AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey };
  await ferryOk(['init'], { env });
});

after(async () => {
  await s3?.stop();
  tmp?.cleanup();
});

const openRepo = () => Repository.open(new FsStorage(env.FERRY_REPO), [{ kind: 'passphrase', passphrase: 'pw' }]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const kind of ['s3', 'dir'] as const) {
  describe(`objects on ${kind === 's3' ? 's3rver' : 'a directory'}`, () => {
    const c = CASES[kind];
    const name = kind === 's3' ? 'resumes' : 'uploads';
    let source: ObjectSource;
    let remove: (key: string) => Promise<void>;
    let set: DataSet;
    let before1: Map<string, string>;
    let t1: string;
    let mut: Mutation;
    let snap1: { id: string; meta: { added: number } };
    let snap2: { id: string; meta: { added: number; changed: number; deleted: number; unchanged: number; deletedKeys: string[] } };

    before(async () => {
      if (kind === 's3') {
        const asset = { name, type: 's3' as const, bucket: s3.bucket, prefix: c.prefix, endpoint: s3.endpoint };
        source = new S3Source(asset);
        const client = assetClient(asset);
        remove = async (key) => void (await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: key })));
      } else {
        source = new DirectorySource(join(tmp.path, 'dir'));
        remove = (key) => rm(join(tmp.path, 'dir', key));
      }
      set = await populate(source, c.prefix, c.n, c.min, c.max);
    });
    after(() => source?.close());

    it('snapshots, then snapshots incrementally and records the deletions', async (t) => {
      snap1 = JSON.parse((await ferryOk(['objects', 'snapshot', name, '--json'], { env })).stdout);
      assert.equal(snap1.meta.added, c.n);
      before1 = new Map(set.state);
      await sleep(50);
      t1 = new Date().toISOString();
      await sleep(50);
      mut = await mutate(set, source, remove, c.prefix, c.k, c.min, c.max);
      const started = Date.now();
      snap2 = JSON.parse((await ferryOk(['objects', 'snapshot', name, '--json'], { env })).stdout);
      t.diagnostic(`${kind}: second snapshot (${c.n} objects, ${3 * c.k} changes) took ${Date.now() - started} ms including process start`);
      assert.equal(snap2.meta.added, c.k);
      assert.equal(snap2.meta.changed, c.k);
      assert.equal(snap2.meta.deleted, c.k);
      assert.equal(snap2.meta.unchanged, c.n - 2 * c.k, 'unchanged objects are not read');
      assert.deepEqual(snap2.meta.deletedKeys, [...mut.deleted].sort());
    });

    it('restores every deleted object and every older version byte-identical', async () => {
      const repo = await openRepo();
      for (const key of mut.deleted) {
        const vs = await objectVersions(repo, name, key);
        assert.deepEqual(vs.map((v) => v.deleted), [false, true], `${key}: one version, then deleted`);
        assert.equal(sha(await readNode(repo, chooseVersion(vs, key, {}).node!)), before1.get(key), key);
      }
      for (const key of mut.overwritten) {
        const vs = await objectVersions(repo, name, key);
        assert.equal(vs.length, 2, `${key}: two versions`);
        const old = chooseVersion(vs, key, { version: vs[0].version });
        assert.equal(sha(await readNode(repo, old.node!)), before1.get(key), `${key}: older version`);
        assert.equal(sha(await readNode(repo, chooseVersion(vs, key, { at: Date.parse(t1) }).node!)), before1.get(key), `${key}: version at t1`);
        assert.equal(sha(await readNode(repo, chooseVersion(vs, key, {}).node!)), set.state.get(key), `${key}: newest version`);
      }
    });

    it('restores through the CLI: a deleted object --to, an older version --in-place (refused without --force)', async () => {
      const gone = mut.deleted[0];
      const out = join(tmp.path, `${kind}-one.bin`);
      await ferryOk(['objects', 'restore', name, gone, '--to', out], { env });
      assert.equal(sha(await readFile(out)), before1.get(gone));
      const vs = JSON.parse((await ferryOk(['objects', 'versions', name, gone, '--json'], { env })).stdout);
      assert.equal(vs.length, 2);
      assert.equal(vs[1].deleted, true);
      assert.match(vs[0].version, /^[0-9a-f]{12}$/);

      const key = mut.overwritten[0];
      const [old] = JSON.parse((await ferryOk(['objects', 'versions', name, key, '--json'], { env })).stdout);
      const refused = await ferry(['objects', 'restore', name, key, '--version', old.version, '--in-place'], { env });
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /exists in .* with other content .* would overwrite it/);
      await ferryOk(['objects', 'restore', name, key, '--version', old.version, '--in-place', '--force'], { env });
      const now = await source.read(key);
      assert.equal(sha(now!.data), before1.get(key), 'the older version is back in place');
      set.state.set(key, before1.get(key)!);
      // The deleted one, back in place (nothing there to overwrite).
      await ferryOk(['objects', 'restore', name, gone, '--in-place'], { env });
      assert.equal(sha((await source.read(gone))!.data), before1.get(gone));
      set.state.set(gone, before1.get(gone)!);
    });

    it('restores a prefix exactly as it was at a time between the snapshots', async () => {
      const prefix = `${c.prefix}d3/`;
      const dir = join(tmp.path, `${kind}-prefix`);
      const r = JSON.parse((await ferryOk(['objects', 'restore', name, '--prefix', prefix, '--at', t1, '--to', dir, '--json'], { env })).stdout);
      assert.equal(r.snapshot, snap1.id);
      const want = only(before1, prefix);
      assert.ok(want.size > 5 && [...want.keys()].some((k) => mut.deleted.includes(k) || mut.overwritten.includes(k)), 'the prefix saw changes');
      assert.deepEqual(only(await dirDigests(dir), prefix), want, 'the listing at t1, with the old contents');
      assert.deepEqual([...(await dirDigests(dir)).keys()].filter((k) => !k.startsWith(prefix)), [], 'nothing outside the prefix');

      const busy = await ferry(['objects', 'restore', name, '--prefix', prefix, '--at', t1, '--to', dir], { env });
      assert.equal(busy.code, 1);
      assert.match(busy.stderr, /is not empty/);

      // An objects snapshot is a tree like any other: `files restore` brings the whole listing back.
      const whole = join(tmp.path, `${kind}-files-restore`);
      await ferryOk(['files', 'restore', snap1.id.slice(0, 12), whole], { env });
      assert.deepEqual(new Map([...(await dirDigests(whole))].sort()), new Map([...before1].sort()));

      const later = join(tmp.path, `${kind}-prefix-now`);
      await ferryOk(['objects', 'restore', name, '--prefix', prefix, '--to', later], { env });
      const now = only(await dirDigests(later), prefix);
      // The newest snapshot predates the in-place restores of the previous test.
      const at2 = only(set.state, prefix);
      for (const k of mut.deleted) if (k.startsWith(prefix)) at2.delete(k);
      for (const k of mut.overwritten) if (k.startsWith(prefix) && now.has(k)) at2.set(k, now.get(k)!);
      assert.deepEqual(now, at2);
    });
  });
}
