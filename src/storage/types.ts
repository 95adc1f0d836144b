/**
 * The storage seam. Every backend (fs, s3) implements `Storage`; everything else
 * (retry, concurrency limit, logging, fault injection) is a wrapper that also
 * implements it, stacked in `open.ts`.
 *
 * Keys are relative, slash-separated paths such as `data/ab/abcdef…` or `config`.
 * They never start with `/`, never contain `..` segments, and never end with `/`.
 *
 * Guarantees every backend MUST give:
 * - `put` is atomic: a reader sees either no object or the whole object, never a
 *   prefix. When `put` resolves, the object is durable (fs: data and directory
 *   fsynced; S3: PUT acknowledged).
 * - `put` with `ifNoneMatch: true` fails with AlreadyExistsError when the key exists,
 *   if the backend declares `conditionalPut`; otherwise the option is best-effort
 *   (checked by stat first, racy) and callers MUST NOT rely on it for mutual exclusion.
 * - `get` returns exactly the bytes stored; with a range, exactly that slice.
 *   A missing key rejects with NotFoundError.
 * - `list` returns every key under the prefix that existed before the call began,
 *   in no particular order, in pages; keys written during the listing may or may not appear.
 * - `delete` of a missing key succeeds (idempotent).
 */
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  size: number;
  /** Last modification time, ms since epoch. */
  mtime: number;
}

export interface Capabilities {
  /** `put` replaces an existing object atomically (readers never see a mix). */
  atomicReplace: boolean;
  /** `put` honours `ifNoneMatch` atomically on the server side. */
  conditionalPut: boolean;
  /** The backend keeps older versions of overwritten or deleted objects. */
  versioning: boolean;
  /** The backend can lock objects against deletion (WORM). */
  objectLock: boolean;
  /** Objects travel over a network: writers keep more uploads in flight to hide latency. */
  remote: boolean;
}

export interface PutOptions {
  /** Fail with AlreadyExistsError if the key already exists. */
  ifNoneMatch?: boolean;
}

export interface GetOptions {
  /** Byte offset to start at. A negative offset counts from the end (suffix range). */
  offset?: number;
  /** Number of bytes to read; omitted means to the end. */
  length?: number;
  /**
   * The object never changes once written (a content-addressed pack): a backend may
   * keep it open between reads (fs keeps a few file handles), a hint only.
   */
  immutable?: boolean;
  /**
   * Read into this buffer when the range fits in it, and return a view of its first bytes
   * (a restore reuses its range buffers, shared with the codec workers). A hint only: a
   * backend may return a buffer of its own (s3 does), so use what `get` returns.
   */
  into?: Buffer;
}

export interface ListPage {
  objects: ObjectInfo[];
  /** Pass back as `cursor` for the next page; undefined when the listing is complete. */
  cursor?: string;
}

export interface Storage {
  /** Human-readable location, for messages (e.g. `/srv/repo` or `s3://bucket/prefix`). */
  readonly location: string;
  readonly capabilities: Capabilities;

  put(key: string, data: Buffer, opts?: PutOptions): Promise<void>;
  /** Stream upload for large objects (multipart on S3). Same atomicity as `put`. */
  putStream(key: string, body: Readable, opts?: PutOptions): Promise<void>;
  get(key: string, opts?: GetOptions): Promise<Buffer>;
  getStream(key: string): Promise<Readable>;
  /** Returns undefined when the key does not exist. */
  stat(key: string): Promise<ObjectInfo | undefined>;
  listPage(prefix: string, cursor?: string, pageSize?: number): Promise<ListPage>;
  delete(key: string): Promise<void>;
  /** Release sockets and handles. */
  close(): Promise<void>;
}

/** Every key under a prefix, following pages. */
export async function* listAll(storage: Storage, prefix: string): AsyncGenerator<ObjectInfo> {
  let cursor: string | undefined;
  do {
    const page = await storage.listPage(prefix, cursor);
    for (const o of page.objects) yield o;
    cursor = page.cursor;
  } while (cursor !== undefined);
}

/** A wrapper forwards everything to an inner storage unless it overrides it. */
export abstract class StorageWrapper implements Storage {
  constructor(protected readonly inner: Storage) {}
  get location(): string {
    return this.inner.location;
  }
  get capabilities(): Capabilities {
    return this.inner.capabilities;
  }
  put(key: string, data: Buffer, opts?: PutOptions): Promise<void> {
    return this.inner.put(key, data, opts);
  }
  putStream(key: string, body: Readable, opts?: PutOptions): Promise<void> {
    return this.inner.putStream(key, body, opts);
  }
  get(key: string, opts?: GetOptions): Promise<Buffer> {
    return this.inner.get(key, opts);
  }
  getStream(key: string): Promise<Readable> {
    return this.inner.getStream(key);
  }
  stat(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.stat(key);
  }
  listPage(prefix: string, cursor?: string, pageSize?: number): Promise<ListPage> {
    return this.inner.listPage(prefix, cursor, pageSize);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
