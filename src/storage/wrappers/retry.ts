/**
 * RetryStorage: retries calls that fail with a transient StorageError
 * (throttling, 5xx, dropped connections), with exponential backoff and full
 * jitter. Permanent errors (not found, already exists, permission...) are
 * rethrown at once.
 *
 * Contract:
 * - `putStream` is never retried: its body is consumed by the first attempt.
 *   `getStream` retries opening the stream only, not errors while reading it.
 * - A `put` with `ifNoneMatch` whose earlier attempt failed transiently may have
 *   landed anyway (the response was lost). If a retry then finds the object
 *   with exactly the bytes being written, the put counts as done.
 */
import { setTimeout as sleepMs } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { systemClock, type Clock } from '../../util/clock.ts';
import { AlreadyExistsError, StorageError } from '../../util/errors.ts';
import { StorageWrapper, type GetOptions, type ListPage, type ObjectInfo, type PutOptions, type Storage } from '../types.ts';

export interface RetryInfo {
  op: string;
  key: string;
  /** The attempt that failed, from 1. */
  attempt: number;
  delayMs: number;
  error: StorageError;
}

export interface RetryOptions {
  /** Total attempts including the first. Default 5. */
  maxAttempts?: number;
  /** Backoff cap of the first retry; doubles per attempt. Default 200 ms. */
  baseDelayMs?: number;
  /** Upper bound of any one backoff. Default 15 s. */
  maxDelayMs?: number;
  /** Injected for tests. Default: a real timer. */
  sleep?: (ms: number) => Promise<void>;
  /** Source of jitter. Default: the system clock. */
  clock?: Clock;
  /** Called before each backoff, e.g. to log it. */
  onRetry?: (info: RetryInfo) => void;
}

export class RetryStorage extends StorageWrapper {
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly clock: Clock;
  private readonly onRetry?: (info: RetryInfo) => void;

  constructor(inner: Storage, opts: RetryOptions = {}) {
    super(inner);
    this.maxAttempts = opts.maxAttempts ?? 5;
    if (!Number.isSafeInteger(this.maxAttempts) || this.maxAttempts < 1) {
      throw new RangeError(`maxAttempts must be a positive integer, got ${opts.maxAttempts}`);
    }
    this.baseDelayMs = opts.baseDelayMs ?? 200;
    this.maxDelayMs = opts.maxDelayMs ?? 15_000;
    this.sleep = opts.sleep ?? ((ms) => sleepMs(ms));
    this.clock = opts.clock ?? systemClock;
    this.onRetry = opts.onRetry;
  }

  override put(key: string, data: Buffer, opts?: PutOptions): Promise<void> {
    return this.retry('put', key, async (attempt) => {
      try {
        await this.inner.put(key, data, opts);
      } catch (e) {
        if (e instanceof AlreadyExistsError && opts?.ifNoneMatch && attempt > 1 && (await this.holds(key, data))) return;
        throw e;
      }
    });
  }

  override putStream(key: string, body: Readable, opts?: PutOptions): Promise<void> {
    return this.inner.putStream(key, body, opts);
  }

  override get(key: string, opts?: GetOptions): Promise<Buffer> {
    return this.retry('get', key, () => this.inner.get(key, opts));
  }

  override getStream(key: string): Promise<Readable> {
    return this.retry('getStream', key, () => this.inner.getStream(key));
  }

  override stat(key: string): Promise<ObjectInfo | undefined> {
    return this.retry('stat', key, () => this.inner.stat(key));
  }

  override listPage(prefix: string, cursor?: string, pageSize?: number): Promise<ListPage> {
    return this.retry('listPage', prefix, () => this.inner.listPage(prefix, cursor, pageSize));
  }

  override delete(key: string): Promise<void> {
    return this.retry('delete', key, () => this.inner.delete(key));
  }

  /** Backoff before retry number `attempt` (1-based): uniform in [0, min(max, base * 2^(attempt-1))]. */
  backoff(attempt: number): number {
    const cap = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
    const unit = this.clock.random(4).readUInt32BE(0) / 2 ** 32;
    return Math.floor(unit * cap);
  }

  private async retry<T>(op: string, key: string, call: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call(attempt);
      } catch (e) {
        if (!(e instanceof StorageError) || !e.transient || attempt >= this.maxAttempts) throw e;
        const delayMs = this.backoff(attempt);
        this.onRetry?.({ op, key, attempt, delayMs, error: e });
        await this.sleep(delayMs);
      }
    }
  }

  /** Whether `key` now holds exactly `data` (a lost-response put that landed). */
  private async holds(key: string, data: Buffer): Promise<boolean> {
    try {
      return (await this.inner.get(key)).equals(data);
    } catch {
      return false;
    }
  }
}
