/**
 * Acceptance for the generic tree engine, through the CLI as a user runs it:
 * a tree with empty files, a file over 1 GiB, 10,000 small files, symlinks and odd
 * names restores byte-identical on fs and on S3 (a real S3 protocol server), and an
 * unchanged second snapshot reads no file and stores (nearly) nothing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ferry, ferryOk } from '../harness/cli.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';
import { makeAwkwardTree, treeDigest } from '../harness/repo.ts';
import { startS3Server, type S3Server } from '../harness/s3.ts';

const BIG = 1024 * 1024 * 1024 + 12345; // over 1 GiB
let tmp: TempDir;
let src: string;
let srcDigest: string;
let s3: S3Server;

before(async () => {
  tmp = makeTempDir('ferry-roundtrip-');
  src = join(tmp.path, 'src');
  await mkdir(src);
  await makeAwkwardTree(src, { smallFiles: 10_000, bigFile: BIG });
  srcDigest = await treeDigest(src);
  s3 = await startS3Server('ferry-roundtrip');
});

after(async () => {
  await s3?.stop();
  tmp?.cleanup();
});

for (const backend of ['fs', 's3'] as const) {
  describe(`files snapshot and restore on ${backend}`, () => {
    it('restores byte-identical; the unchanged second snapshot stores nearly nothing', async (t) => {
      const env =
        backend === 'fs'
          ? { FERRY_REPO: join(tmp.path, 'repo-fs'), FERRY_PASSWORD: 'pw' }
          : {
              FERRY_REPO: `s3://${s3.bucket}/repo`,
              FERRY_S3_ENDPOINT: s3.endpoint,
              AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
              AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
              FERRY_PASSWORD: 'pw',
            };
      // fs names blobs with keyed BLAKE3 (the default), S3 with HMAC-SHA-256: both ids round-trip.
      const idHash = backend === 'fs' ? 'blake3' : 'hmac-sha256';
      const bad = await ferry(['init', '--id-hash', 'md5'], { env });
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /unknown id hash md5/);
      const made = JSON.parse((await ferryOk(['init', ...(backend === 's3' ? ['--id-hash', idHash] : []), '--json'], { env })).stdout);
      assert.equal(made.idHash, idHash);
      const first = JSON.parse((await ferryOk(['files', 'snapshot', src, '--json'], { env })).stdout);
      assert.ok(first.stats.files >= 10_000);
      assert.equal(first.stats.filesRead, first.stats.files);
      const second = JSON.parse((await ferryOk(['files', 'snapshot', src, '--json'], { env })).stdout);
      assert.equal(second.stats.filesRead, 0, 'unchanged files are not read again');
      assert.ok(second.stats.storedBytes < 64 * 1024, `second snapshot stored ${second.stats.storedBytes} bytes`);
      assert.equal(second.parent, first.id);
      t.diagnostic(`${backend}: first snapshot ${first.stats.durationMs} ms, unchanged second ${second.stats.durationMs} ms, stored ${first.stats.storedBytes} then ${second.stats.storedBytes} bytes`);
      const out = join(tmp.path, `out-${backend}`);
      const r = JSON.parse((await ferryOk(['files', 'restore', second.id.slice(0, 12), out, '--json'], { env })).stdout);
      t.diagnostic(`${backend}: restore ${r.durationMs} ms`);
      assert.equal(await treeDigest(out), srcDigest);
      await ferryOk(['repo', 'check'], { env });
    });
  });
}
