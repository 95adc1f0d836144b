/**
 * Fault injection: the conformance suite through FaultyStorage with no faults
 * armed, and the behaviour of retry, limit and log under injected faults, plus
 * the fs atomicity guarantee when a write is interrupted.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { FsStorage } from '../../src/storage/fs.ts';
import { StorageWrapper, type GetOptions } from '../../src/storage/types.ts';
import { FaultyStorage } from '../../src/storage/wrappers/faulty.ts';
import { LimitStorage } from '../../src/storage/wrappers/limit.ts';
import { LogStorage } from '../../src/storage/wrappers/log.ts';
import { RetryStorage } from '../../src/storage/wrappers/retry.ts';
import { AlreadyExistsError, NotFoundError, StorageError } from '../../src/util/errors.ts';
import { storageConformance } from './conformance.ts';

storageConformance('faulty(fs) with no faults armed', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-faulty-'));
  return { storage: new FaultyStorage(new FsStorage(dir)), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Counts calls in flight on the storage below it. */
class InFlight extends StorageWrapper {
  now = 0;
  max = 0;
  override async get(key: string, opts?: GetOptions): Promise<Buffer> {
    this.now++;
    this.max = Math.max(this.max, this.now);
    try {
      return await this.inner.get(key, opts);
    } finally {
      this.now--;
    }
  }
}

describe('wrappers under injected faults', () => {
  let dir: string;
  let fs: FsStorage;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-faulty-'));
    fs = new FsStorage(dir);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  function retrying(inner: FaultyStorage, maxAttempts = 4) {
    const sleeps: number[] = [];
    const storage = new RetryStorage(inner, {
      maxAttempts,
      baseDelayMs: 100,
      maxDelayMs: 1000,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    return { storage, sleeps };
  }

  it('retry recovers from transient failures with bounded, growing backoff', async () => {
    await fs.put('retry/ok', Buffer.from('payload'));
    const faulty = new FaultyStorage(fs).failNext('get', 3);
    const { storage, sleeps } = retrying(faulty);
    assert.equal((await storage.get('retry/ok')).toString(), 'payload');
    assert.equal(faulty.calls.get, 4);
    assert.equal(sleeps.length, 3);
    sleeps.forEach((ms, i) => assert.ok(ms >= 0 && ms <= 100 * 2 ** i, `backoff ${i}: ${ms}`));

    faulty.failNext('put', 2).failNext('stat', 1).failNext('listPage', 1).failNext('delete', 1);
    await storage.put('retry/p', Buffer.from('x'));
    assert.equal((await storage.stat('retry/p'))?.size, 1);
    assert.equal((await storage.listPage('retry/')).objects.length, 2);
    await storage.delete('retry/p');
    assert.equal(await fs.stat('retry/p'), undefined);
  });

  it('retry gives up at once on permanent errors, and after maxAttempts on transient ones', async () => {
    const faulty = new FaultyStorage(fs).failNext('put', 1, { transient: false });
    const { storage, sleeps } = retrying(faulty);
    await assert.rejects(storage.put('retry/perm', Buffer.from('x')), (e) => e instanceof StorageError && !e.transient);
    assert.equal(faulty.calls.put, 1);
    assert.equal(sleeps.length, 0);

    await assert.rejects(storage.get('retry/none'), NotFoundError);
    assert.equal(faulty.calls.get, 1, 'not found is not retried');

    faulty.failNext('stat', 10);
    await assert.rejects(storage.stat('retry/x'), (e) => e instanceof StorageError && e.transient);
    assert.equal(faulty.calls.stat, 4);
    assert.equal(sleeps.length, 3);
  });

  it('retry treats an ifNoneMatch put whose lost response had landed as done', async () => {
    const faulty = new FaultyStorage(fs).failNext('put', 1, { after: true });
    const { storage } = retrying(faulty);
    await storage.put('retry/lock', Buffer.from('owner 1'), { ifNoneMatch: true });
    assert.equal(faulty.calls.put, 2);
    assert.equal((await fs.get('retry/lock')).toString(), 'owner 1');
    faulty.failNext('put', 1, { after: false });
    await assert.rejects(storage.put('retry/lock', Buffer.from('owner 2'), { ifNoneMatch: true }), AlreadyExistsError);
  });

  it('retry does not replay putStream, whose body is consumed', async () => {
    const faulty = new FaultyStorage(fs).failNext('putStream', 1);
    const { storage, sleeps } = retrying(faulty);
    await assert.rejects(storage.putStream('retry/stream', Readable.from([Buffer.from('x')])), StorageError);
    assert.equal(faulty.calls.putStream, 1);
    assert.equal(sleeps.length, 0);
  });

  it('limit never exceeds N calls in flight', async () => {
    await fs.put('limit/obj', Buffer.from('x'));
    const counter = new InFlight(new FaultyStorage(fs).delay('get', 5));
    const limited = new LimitStorage(counter, 4);
    const results = await Promise.all(Array.from({ length: 40 }, () => limited.get('limit/obj')));
    assert.equal(results.length, 40);
    assert.equal(counter.max, 4);
    assert.equal(limited.inFlight, 0);
    // Failures release their slot too.
    const failing = new LimitStorage(new FaultyStorage(fs).failNext('get', 10, { transient: false }), 2);
    const settled = await Promise.allSettled(Array.from({ length: 12 }, () => failing.get('limit/obj')));
    assert.equal(settled.filter((s) => s.status === 'fulfilled').length, 2);
    assert.equal(failing.inFlight, 0);
  });

  it('makes corruption of get and getStream detectable by hash', async () => {
    const data = randomBytes(64 * 1024);
    await fs.put('corrupt/obj', data);
    const faulty = new FaultyStorage(fs).corruptNextGet(2);
    const bad = await faulty.get('corrupt/obj');
    assert.equal(bad.length, data.length);
    assert.notEqual(sha256(bad), sha256(data));
    const chunks: Buffer[] = [];
    for await (const c of await faulty.getStream('corrupt/obj')) chunks.push(c as Buffer);
    assert.notEqual(sha256(Buffer.concat(chunks)), sha256(data));
    assert.equal(sha256(await faulty.get('corrupt/obj')), sha256(data), 'only the armed reads are corrupted');
    assert.equal(sha256(await fs.get('corrupt/obj')), sha256(data), 'the stored object is intact');
  });

  it('fs put is atomic: an interrupted write leaves no visible object and no temp file', async () => {
    const faulty = new FaultyStorage(fs).truncateNextPut(1);
    await assert.rejects(faulty.put('atomic/new', randomBytes(3 * 1024 * 1024)), (e) => e instanceof StorageError && e.transient);
    assert.equal(await fs.stat('atomic/new'), undefined);
    await assert.rejects(fs.get('atomic/new'), NotFoundError);
    assert.deepEqual((await fs.listPage('atomic/')).objects, []);

    const old = Buffer.from('the old, complete version');
    await fs.put('atomic/existing', old);
    faulty.truncateNextPut(1, 5);
    await assert.rejects(faulty.put('atomic/existing', Buffer.from('a new version that never lands')), StorageError);
    assert.ok((await fs.get('atomic/existing')).equals(old));

    faulty.truncateNextPut(1);
    const body = Readable.from([randomBytes(1000), randomBytes(1000)]);
    await assert.rejects(faulty.putStream('atomic/stream', body), StorageError);
    assert.equal(await fs.stat('atomic/stream'), undefined);

    assert.deepEqual((await readdir(join(dir, 'atomic'))).sort(), ['existing'], 'no .tmp- file left behind');
  });

  it('onPut hook can fail a put before anything is written', async () => {
    const faulty = new FaultyStorage(fs);
    faulty.onPut = (key) => {
      if (key.startsWith('hook/deny')) throw new StorageError(`policy refuses ${key}`);
    };
    await faulty.put('hook/allow', Buffer.from('ok'));
    await assert.rejects(faulty.put('hook/deny', Buffer.from('no')), /policy refuses/);
    await assert.rejects(faulty.putStream('hook/deny-stream', Readable.from([Buffer.from('no')])), /policy refuses/);
    assert.deepEqual((await fs.listPage('hook/')).objects.map((o) => o.key), ['hook/allow']);
  });

  it('log records op, key, bytes and duration, never the data', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = pino({ level: 'debug' }, sink);
    const secret = 'TOP-SECRET-PAYLOAD';
    const faulty = new FaultyStorage(fs).failNext('delete', 1, { transient: false });
    const logged = new LogStorage(faulty, logger);
    await logged.put('log/obj', Buffer.from(secret));
    await logged.get('log/obj', { offset: 4 });
    await logged.putStream('log/stream', Readable.from([Buffer.from(secret), Buffer.from(secret)]));
    await assert.rejects(logged.get('log/missing'), NotFoundError);
    await assert.rejects(logged.delete('log/obj'), StorageError);
    await new Promise((r) => setImmediate(r));
    const entries = lines.join('').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(!lines.join('').includes(secret), 'data leaked into the log');
    const put = entries.find((e) => e.op === 'put');
    assert.equal(put?.key, 'log/obj');
    assert.equal(put?.bytes, secret.length);
    assert.equal(typeof put?.ms, 'number');
    assert.equal(entries.find((e) => e.op === 'get' && e.key === 'log/obj')?.bytes, secret.length - 4);
    assert.equal(entries.find((e) => e.op === 'putStream')?.bytes, 2 * secret.length);
    assert.equal(entries.find((e) => e.key === 'log/missing')?.level, 20, 'not found is debug, not a warning');
    const failed = entries.find((e) => e.op === 'delete');
    assert.equal(failed?.level, 40);
    assert.match(String(failed?.reason), /injected fault/);
  });
});
