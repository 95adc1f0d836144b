/**
 * LimitStorage: at most `limit` calls in flight on the inner storage; further
 * calls wait in FIFO order.
 *
 * Contract: a slot is held for the whole call. For `getStream` that is until
 * the stream is returned, not until it is read: reading happens outside the
 * limit, so a slow reader cannot starve other calls (the S3 socket pool still
 * bounds connections).
 */
import type { Readable } from 'node:stream';
import { StorageWrapper, type GetOptions, type ListPage, type ObjectInfo, type PutOptions, type Storage } from '../types.ts';

export class LimitStorage extends StorageWrapper {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    inner: Storage,
    readonly limit: number,
  ) {
    super(inner);
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${limit}`);
  }

  /** Calls currently running on the inner storage. */
  get inFlight(): number {
    return this.active;
  }

  override put(key: string, data: Buffer, opts?: PutOptions): Promise<void> {
    return this.run(() => this.inner.put(key, data, opts));
  }

  override putStream(key: string, body: Readable, opts?: PutOptions): Promise<void> {
    return this.run(() => this.inner.putStream(key, body, opts));
  }

  override get(key: string, opts?: GetOptions): Promise<Buffer> {
    return this.run(() => this.inner.get(key, opts));
  }

  override getStream(key: string): Promise<Readable> {
    return this.run(() => this.inner.getStream(key));
  }

  override stat(key: string): Promise<ObjectInfo | undefined> {
    return this.run(() => this.inner.stat(key));
  }

  override listPage(prefix: string, cursor?: string, pageSize?: number): Promise<ListPage> {
    return this.run(() => this.inner.listPage(prefix, cursor, pageSize));
  }

  override delete(key: string): Promise<void> {
    return this.run(() => this.inner.delete(key));
  }

  private async run<T>(call: () => Promise<T>): Promise<T> {
    if (this.active < this.limit) {
      this.active++;
    } else {
      // release() hands its slot straight to us, so `active` is unchanged.
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    try {
      return await call();
    } finally {
      this.release();
    }
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}
