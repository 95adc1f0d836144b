/**
 * LogStorage: logs every call with its operation, key, byte count and
 * duration to a pino logger. Contract: it never logs object contents.
 *
 * Successful calls and expected outcomes (not found, already exists) are logged
 * at `level` (default debug); other failures at warn.
 */
import { performance } from 'node:perf_hooks';
import { Transform, pipeline, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import { AlreadyExistsError, NotFoundError, StorageError } from '../../util/errors.ts';
import { StorageWrapper, type GetOptions, type ListPage, type ObjectInfo, type PutOptions, type Storage } from '../types.ts';

export type LogLevel = 'trace' | 'debug' | 'info';

interface Fields {
  op: string;
  key: string;
  bytes?: number;
  [extra: string]: unknown;
}

export class LogStorage extends StorageWrapper {
  constructor(
    inner: Storage,
    private readonly log: Logger,
    private readonly level: LogLevel = 'debug',
  ) {
    super(inner);
  }

  override put(key: string, data: Buffer, opts?: PutOptions): Promise<void> {
    return this.call({ op: 'put', key, bytes: data.length, ifNoneMatch: opts?.ifNoneMatch }, () => this.inner.put(key, data, opts));
  }

  override putStream(key: string, body: Readable, opts?: PutOptions): Promise<void> {
    const fields: Fields = { op: 'putStream', key, bytes: 0, ifNoneMatch: opts?.ifNoneMatch };
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        fields.bytes = (fields.bytes ?? 0) + chunk.length;
        done(null, chunk);
      },
    });
    pipeline(body, counter, () => {});
    return this.call(fields, async () => {
      try {
        await this.inner.putStream(key, counter, opts);
      } catch (e) {
        counter.destroy(); // also tears down `body`, which may never have been read
        throw e;
      }
    });
  }

  override get(key: string, opts?: GetOptions): Promise<Buffer> {
    const fields: Fields = { op: 'get', key, offset: opts?.offset, length: opts?.length };
    return this.call(fields, async () => {
      const data = await this.inner.get(key, opts);
      fields.bytes = data.length;
      return data;
    });
  }

  override getStream(key: string): Promise<Readable> {
    return this.call({ op: 'getStream', key }, () => this.inner.getStream(key));
  }

  override stat(key: string): Promise<ObjectInfo | undefined> {
    const fields: Fields = { op: 'stat', key };
    return this.call(fields, async () => {
      const info = await this.inner.stat(key);
      fields.bytes = info?.size;
      fields.found = info !== undefined;
      return info;
    });
  }

  override listPage(prefix: string, cursor?: string, pageSize?: number): Promise<ListPage> {
    const fields: Fields = { op: 'listPage', key: prefix, paged: cursor !== undefined };
    return this.call(fields, async () => {
      const page = await this.inner.listPage(prefix, cursor, pageSize);
      fields.count = page.objects.length;
      return page;
    });
  }

  override delete(key: string): Promise<void> {
    return this.call({ op: 'delete', key }, () => this.inner.delete(key));
  }

  private async call<T>(fields: Fields, run: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      const result = await run();
      this.log[this.level]({ storage: this.location, ...fields, ms: elapsed(start) }, 'storage call');
      return result;
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      const entry = {
        storage: this.location,
        ...fields,
        ms: elapsed(start),
        error: err.name,
        reason: err.message,
        transient: e instanceof StorageError ? e.transient : undefined,
      };
      if (e instanceof NotFoundError || e instanceof AlreadyExistsError) this.log[this.level](entry, 'storage call');
      else this.log.warn(entry, 'storage call failed');
      throw e;
    }
  }
}

function elapsed(start: number): number {
  return Math.round((performance.now() - start) * 10) / 10;
}
