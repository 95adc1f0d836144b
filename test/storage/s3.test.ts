/**
 * S3Storage against a real S3 protocol server (s3rver in a child process):
 * the conformance suite, the stack openStorage builds for s3:// URLs, and
 * error mapping for an unreachable server.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { S3Storage } from '../../src/storage/s3.ts';
import { openStorage } from '../../src/storage/open.ts';
import { StorageError } from '../../src/util/errors.ts';
import { startS3Server, type S3Server } from '../harness/s3.ts';
import { storageConformance } from './conformance.ts';

describe('S3Storage on s3rver', () => {
  let server: S3Server;
  before(async () => {
    server = await startS3Server();
  });
  after(async () => {
    await server?.stop();
  });

  // s3rver ignores If-None-Match, overwrites in place and has no versioning: declare it.
  storageConformance('s3 (s3rver)', async () => ({
    storage: new S3Storage({
      bucket: server.bucket,
      prefix: 'conformance/repo',
      endpoint: server.endpoint,
      capabilities: { conditionalPut: false, atomicReplace: false, versioning: false },
    }),
    cleanup: async () => {},
  }));

  it('is opened from an s3:// URL with FERRY_S3_ENDPOINT', async () => {
    const storage = openStorage(`s3://${server.bucket}/opened/`, { env: { FERRY_S3_ENDPOINT: server.endpoint } });
    try {
      assert.equal(storage.location, `s3://${server.bucket}/opened`);
      assert.equal(storage.capabilities.conditionalPut, false, 'custom endpoints do not assume conditional writes');
      await storage.put('k/v', Buffer.from('through the stack'));
      assert.equal((await storage.get('k/v', { offset: 8 })).toString(), 'the stack');
      const page = await storage.listPage('k/');
      assert.deepEqual(page.objects.map((o) => o.key), ['k/v']);
    } finally {
      await storage.close();
    }
  });

  it('keeps prefixes apart', async () => {
    const a = new S3Storage({ bucket: server.bucket, prefix: 'iso/a', endpoint: server.endpoint, capabilities: { conditionalPut: false } });
    const ab = new S3Storage({ bucket: server.bucket, prefix: 'iso/ab', endpoint: server.endpoint, capabilities: { conditionalPut: false } });
    try {
      await a.put('x', Buffer.from('a'));
      await ab.put('x', Buffer.from('ab'));
      assert.deepEqual((await a.listPage('')).objects.map((o) => o.key), ['x']);
      assert.equal((await ab.get('x')).toString(), 'ab');
    } finally {
      await a.close();
      await ab.close();
    }
  });
});

describe('S3Storage errors', () => {
  it('maps a refused connection to a transient StorageError', async () => {
    const storage = new S3Storage({
      bucket: 'nowhere',
      endpoint: 'http://127.0.0.1:1',
      maxAttempts: 1,
      credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
    });
    try {
      await assert.rejects(storage.get('k'), (e: unknown) => {
        assert.ok(e instanceof StorageError, String(e));
        assert.equal(e.transient, true);
        assert.match(e.message, /s3:\/\/nowhere\/k/);
        return true;
      });
    } finally {
      await storage.close();
    }
  });
});
