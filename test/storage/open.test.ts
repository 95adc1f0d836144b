/**
 * openStorage URL parsing: which backend each accepted form opens, and the
 * ConfigError (with a hint) for everything else.
 */
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FsStorage } from '../../src/storage/fs.ts';
import { openBackend, openStorage } from '../../src/storage/open.ts';
import { LazyStorage } from '../../src/storage/lazy.ts';
import { S3Storage, parseS3Url } from '../../src/storage/s3.ts';
import { ConfigError } from '../../src/util/errors.ts';

describe('openStorage', () => {
  it('opens plain paths and file:// URLs as absolute directories', () => {
    assert.equal(openStorage('/srv/ferry').location, '/srv/ferry');
    assert.equal(openStorage('rel/repo').location, resolve('rel/repo'));
    assert.equal(openStorage('file:///srv/my%20repo').location, '/srv/my repo');
    assert.equal(openStorage('file://rel/repo').location, resolve('rel/repo'));
    assert.ok(openBackend('./a:b') instanceof FsStorage);
  });

  it('opens s3:// URLs with bucket, prefix and endpoint', async () => {
    const b = openBackend('s3://my-bucket/some/prefix/', { env: { FERRY_S3_ENDPOINT: 'http://127.0.0.1:9000' } });
    assert.ok(b instanceof LazyStorage);
    assert.ok((await b.backend()) instanceof S3Storage);
    assert.equal(b.location, 's3://my-bucket/some/prefix');
    assert.equal(b.capabilities.conditionalPut, false);
    await b.close();
    const aws = openBackend('s3://my-bucket', { env: {} });
    assert.equal(aws.location, 's3://my-bucket');
    assert.equal(aws.capabilities.conditionalPut, true, 'AWS S3 has conditional writes');
    await aws.close();
    const declared = openBackend('s3://b-1.x', { endpoint: 'https://minio:9000', capabilities: { conditionalPut: true } });
    assert.equal(declared.capabilities.conditionalPut, true);
    await declared.close();
  });

  it('parses S3 URLs strictly', () => {
    assert.deepEqual(parseS3Url('s3://bucket'), { bucket: 'bucket', prefix: '' });
    assert.deepEqual(parseS3Url('s3://bucket/'), { bucket: 'bucket', prefix: '' });
    assert.deepEqual(parseS3Url('s3://bucket/a/b/'), { bucket: 'bucket', prefix: 'a/b' });
    for (const bad of ['s3://', 's3://UPPER/x', 's3://a', 's3://bucket/a/../b', 's3://bucket/a//b']) {
      assert.throws(() => parseS3Url(bad), ConfigError, bad);
    }
  });

  it('rejects unknown schemes and bad endpoints with a ConfigError and a hint', () => {
    for (const url of ['ftp://host/x', 'gs://bucket', 'sftp:host:/path', '', 'https://example.com/repo']) {
      assert.throws(
        () => openStorage(url),
        (e: unknown) => e instanceof ConfigError && e.exitCode === 2 && /s3:\/\/bucket/.test(e.hint ?? ''),
        url,
      );
    }
    assert.throws(() => openStorage('s3://bucket', { endpoint: 'not a url' }), ConfigError);
    assert.throws(() => openStorage('s3://bucket', { endpoint: 'ftp://x' }), ConfigError);
  });
});
