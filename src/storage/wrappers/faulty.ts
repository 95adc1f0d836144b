/**
 * FaultyStorage: fault injection on demand, for tests and for users checking
 * that a bucket and Ferry's wrappers behave under failure.
 *
 * Faults are armed by calling methods and consumed by later calls:
 * - `failNext(op, n, spec)`: the next n calls of `op` fail with an injected
 *   StorageError (transient unless told otherwise), before reaching the inner
 *   storage, or after it (`after: true`: the call took effect, its answer was lost).
 * - `delay(op, ms)`: every call of `op` waits `ms` first (0 clears).
 * - `corruptNextGet(n)`: the next n non-empty `get`/`getStream` results have one byte flipped.
 * - `truncateNextPut(n, afterBytes)`: the next n puts send only a prefix of their
 *   bytes to the inner storage as a stream that then breaks, and reject with a
 *   transient StorageError. On an atomic backend no object must become visible.
 * - `onPut`: a hook run before every put; throwing from it fails the put.
 * `calls` counts calls per operation, faulted or not.
 */
import { Readable, Transform } from 'node:stream';
import { setTimeout as sleepMs } from 'node:timers/promises';
import { StorageError } from '../../util/errors.ts';
import { StorageWrapper, type GetOptions, type ListPage, type ObjectInfo, type PutOptions, type Storage } from '../types.ts';

export type StorageOp = 'put' | 'putStream' | 'get' | 'getStream' | 'stat' | 'listPage' | 'delete';

export interface FaultSpec {
  /** Whether the injected error is transient (retryable). Default true. */
  transient?: boolean;
  /** Fail after the inner call completed (a lost response) instead of before it. */
  after?: boolean;
  /** Throw this instead of the injected StorageError. */
  error?: Error;
}

interface Truncation {
  /** Bytes let through before the write breaks; undefined = half of a put, the first chunk of a putStream. */
  afterBytes?: number;
}

export class FaultyStorage extends StorageWrapper {
  /** Run before every put and putStream; throwing fails the call before any byte is written. */
  onPut?: (key: string) => void | Promise<void>;
  readonly calls: Record<StorageOp, number> = { put: 0, putStream: 0, get: 0, getStream: 0, stat: 0, listPage: 0, delete: 0 };
  private readonly failures = new Map<StorageOp, FaultSpec[]>();
  private readonly delays = new Map<StorageOp, number>();
  private corruptions = 0;
  private readonly truncations: Truncation[] = [];

  constructor(
    inner: Storage,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => sleepMs(ms),
  ) {
    super(inner);
  }

  failNext(op: StorageOp, n = 1, spec: FaultSpec = {}): this {
    const queue = this.failures.get(op) ?? [];
    for (let i = 0; i < n; i++) queue.push(spec);
    this.failures.set(op, queue);
    return this;
  }

  delay(op: StorageOp, ms: number): this {
    if (ms > 0) this.delays.set(op, ms);
    else this.delays.delete(op);
    return this;
  }

  corruptNextGet(n = 1): this {
    this.corruptions += n;
    return this;
  }

  truncateNextPut(n = 1, afterBytes?: number): this {
    for (let i = 0; i < n; i++) this.truncations.push({ afterBytes });
    return this;
  }

  /** Disarms every fault and clears the hook (counters are kept). */
  reset(): this {
    this.failures.clear();
    this.delays.clear();
    this.corruptions = 0;
    this.truncations.length = 0;
    this.onPut = undefined;
    return this;
  }

  override async put(key: string, data: Buffer, opts?: PutOptions): Promise<void> {
    await this.before('put', key);
    const cut = this.truncations.shift();
    if (cut) {
      const keep = Math.min(data.length, cut.afterBytes ?? Math.floor(data.length / 2));
      return this.interruptedWrite(key, brokenStream([data.subarray(0, keep)]), opts, `${keep} of ${data.length} bytes`);
    }
    return this.after('put', key, this.inner.put(key, data, opts));
  }

  override async putStream(key: string, body: Readable, opts?: PutOptions): Promise<void> {
    await this.before('putStream', key);
    const cut = this.truncations.shift();
    if (cut) return this.interruptedWrite(key, brokenStream(prefixOf(body, cut.afterBytes)), opts, 'a prefix of the stream');
    return this.after('putStream', key, this.inner.putStream(key, body, opts));
  }

  override async get(key: string, opts?: GetOptions): Promise<Buffer> {
    await this.before('get', key);
    const data = await this.after('get', key, this.inner.get(key, opts));
    if (this.corruptions > 0 && data.length > 0) {
      this.corruptions--;
      const bad = Buffer.from(data);
      bad[bad.length >> 1] ^= 0xff;
      return bad;
    }
    return data;
  }

  override async getStream(key: string): Promise<Readable> {
    await this.before('getStream', key);
    const stream = await this.after('getStream', key, this.inner.getStream(key));
    if (this.corruptions === 0) return stream;
    this.corruptions--;
    let pending = true;
    const flip = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        if (pending && chunk.length > 0) {
          pending = false;
          const bad = Buffer.from(chunk);
          bad[bad.length >> 1] ^= 0xff;
          return done(null, bad);
        }
        done(null, chunk);
      },
    });
    stream.on('error', (e) => flip.destroy(e));
    return stream.pipe(flip);
  }

  override async stat(key: string): Promise<ObjectInfo | undefined> {
    await this.before('stat', key);
    return this.after('stat', key, this.inner.stat(key));
  }

  override async listPage(prefix: string, cursor?: string, pageSize?: number): Promise<ListPage> {
    await this.before('listPage', prefix);
    return this.after('listPage', prefix, this.inner.listPage(prefix, cursor, pageSize));
  }

  override async delete(key: string): Promise<void> {
    await this.before('delete', key);
    return this.after('delete', key, this.inner.delete(key));
  }

  private async before(op: StorageOp, key: string): Promise<void> {
    this.calls[op]++;
    const ms = this.delays.get(op);
    if (ms) await this.sleep(ms);
    if (op === 'put' || op === 'putStream') await this.onPut?.(key);
    const next = this.failures.get(op)?.[0];
    if (next && !next.after) {
      this.failures.get(op)?.shift();
      throw injected(op, key, next);
    }
  }

  private async after<T>(op: StorageOp, key: string, call: Promise<T>): Promise<T> {
    const result = await call;
    const next = this.failures.get(op)?.[0];
    if (next?.after) {
      this.failures.get(op)?.shift();
      throw injected(op, key, next);
    }
    return result;
  }

  private async interruptedWrite(key: string, body: Readable, opts: PutOptions | undefined, what: string): Promise<never> {
    try {
      await this.inner.putStream(key, body, opts);
    } catch {
      // Expected: the stream broke. Whatever the backend says, the caller sees the fault.
    }
    throw new StorageError(`injected fault: write of ${key} interrupted after ${what}`, { transient: true });
  }
}

function injected(op: StorageOp, key: string, spec: FaultSpec): Error {
  return spec.error ?? new StorageError(`injected fault: ${op} ${key}`, { transient: spec.transient ?? true });
}

/** A stream that yields `chunks` and then fails, like a connection dropped mid-upload. */
function brokenStream(chunks: Iterable<Buffer> | AsyncIterable<Buffer>): Readable {
  return Readable.from(
    (async function* () {
      for await (const c of chunks) yield c;
      throw new Error('injected fault: connection dropped mid-write');
    })(),
    { objectMode: false },
  );
}

/** The first `limit` bytes of `body` (default: its first chunk). */
async function* prefixOf(body: Readable, limit: number | undefined): AsyncGenerator<Buffer> {
  let left = limit ?? Infinity;
  for await (const chunk of body) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    yield buf.subarray(0, Math.min(buf.length, left));
    left -= buf.length;
    if (limit === undefined || left <= 0) break;
  }
  body.destroy();
}
