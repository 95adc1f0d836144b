/**
 * FsStorage: the `Storage` backend over a local (or mounted) directory.
 *
 * Each key is a file at `<root>/<key>`. Writes go to `.tmp-<random>` in the
 * target directory, are fsynced, then made visible by `rename` (replace) or
 * `link` (if-none-match, which fails atomically with EEXIST), and the directory
 * is fsynced, so a crash leaves either no object or the whole object. Names
 * starting with `.tmp-` are reserved: listings skip them and keys may not use them.
 * Limitation: a key cannot also be a directory (`a` and `a/b` cannot coexist).
 */
import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { link, mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { AlreadyExistsError, FerryError, NotFoundError, StorageError } from '../util/errors.ts';
import { checkKey, checkPrefix } from './keys.ts';
import { killPoint } from '../util/killpoint.ts';
import { checkRange, resolveRange } from './range.ts';
import type { Capabilities, GetOptions, ListPage, ObjectInfo, PutOptions, Storage } from './types.ts';

const TMP_PREFIX = '.tmp-';
/** Open handles kept for reads of immutable objects (restore reads one pack range after another). */
const KEEP_OPEN = 32;
/** Kept handles close after this long without a read. */
const IDLE_CLOSE_MS = 1000;

interface Reader {
  fh: Promise<{ fh: FileHandle; size: number }>;
  users: number;
}
const DEFAULT_PAGE_SIZE = 1000;
/** Files stat'ed at once while listing (see walk). */
const STAT_BATCH = 32;

export interface FsStorageOptions {
  /** Mode of new object files (before umask). Default 0o640. */
  fileMode?: number;
  /** Mode of new directories (before umask). Default 0o750. */
  dirMode?: number;
}

type Errno = NodeJS.ErrnoException;

/** A directory of objects: `made` once it exists, `durable` once its parent chain is fsynced too. */
interface DirReady {
  made: Promise<void>;
  durable: Promise<void>;
}

export class FsStorage implements Storage {
  readonly location: string;
  readonly capabilities: Capabilities = {
    atomicReplace: true,
    conditionalPut: true,
    versioning: false,
    objectLock: false,
    remote: false,
  };
  private readonly root: string;
  private readonly fileMode: number;
  private readonly dirMode: number;
  /** Directories this process made sure of: created (`made`), and parent chain fsynced (`durable`). */
  private readonly durableDirs = new Map<string, DirReady>();
  private readonly readers = new Map<string, Reader>();
  private idleTimer?: NodeJS.Timeout;

  constructor(root: string, opts: FsStorageOptions = {}) {
    this.root = resolve(root);
    this.location = this.root;
    this.fileMode = opts.fileMode ?? 0o640;
    this.dirMode = opts.dirMode ?? 0o750;
  }

  async put(key: string, data: Buffer, opts?: PutOptions): Promise<void> {
    await this.writeAtomic(key, opts, async (fh) => {
      let off = 0;
      while (off < data.length) {
        const { bytesWritten } = await fh.write(data, off, data.length - off);
        off += bytesWritten;
      }
      // Crash tests stop here: bytes written to the temp file, not yet synced or renamed.
      await killPoint('fs-put-written');
    });
  }

  async putStream(key: string, body: Readable, opts?: PutOptions): Promise<void> {
    await this.writeAtomic(key, opts, async (fh) => {
      for await (const chunk of body) {
        const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
        let off = 0;
        while (off < buf.length) {
          const { bytesWritten } = await fh.write(buf, off, buf.length - off);
          off += bytesWritten;
        }
      }
      // As in put: every byte in the temp file, not yet synced or renamed.
      await killPoint('fs-put-written');
    });
  }

  async get(key: string, opts?: GetOptions): Promise<Buffer> {
    checkRange(opts);
    if (opts?.immutable) return this.getKeptOpen(key, opts);
    const fh = await this.openForRead(key);
    try {
      return await this.readRange(key, fh, opts);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /** A ranged read through a handle kept open across calls (see KEEP_OPEN). */
  private async getKeptOpen(key: string, opts: GetOptions): Promise<Buffer> {
    let r = this.readers.get(key);
    if (r) {
      this.readers.delete(key); // re-insert: the map's order is least recently used first
      this.readers.set(key, r);
    } else {
      r = { fh: this.openForRead(key).then(async (fh) => ({ fh, size: (await fh.stat()).size })), users: 0 };
      this.readers.set(key, r);
      r.fh.catch(() => this.readers.get(key) === r && this.readers.delete(key));
      this.evictReaders();
    }
    r.users++;
    try {
      const { fh, size } = await r.fh;
      return await this.readRange(key, fh, opts, size);
    } finally {
      r.users--;
      if (this.readers.get(key) !== r && r.users === 0) await closeReader(r);
      this.idleTimer ??= setTimeout(() => this.closeIdleReaders(), IDLE_CLOSE_MS).unref();
    }
  }

  /**
   * Closes handles nobody is reading through. The pending timer also keeps them reachable,
   * so a storage its owner never closes does not leave handles for the GC to close (Node
   * warns about that).
   */
  private closeIdleReaders(): void {
    this.idleTimer = undefined;
    for (const [k, r] of this.readers) {
      if (r.users > 0) continue;
      this.readers.delete(k);
      void closeReader(r);
    }
    if (this.readers.size) this.idleTimer = setTimeout(() => this.closeIdleReaders(), IDLE_CLOSE_MS).unref();
  }

  private evictReaders(): void {
    for (const [k, r] of this.readers) {
      if (this.readers.size <= KEEP_OPEN) break;
      this.readers.delete(k);
      if (r.users === 0) void closeReader(r);
    }
  }

  private async readRange(key: string, fh: FileHandle, opts?: GetOptions, knownSize?: number): Promise<Buffer> {
    try {
      const { start, end } = resolveRange(knownSize ?? (await fh.stat()).size, opts);
      const buf = opts?.into && opts.into.length >= end - start ? opts.into.subarray(0, end - start) : Buffer.allocUnsafe(end - start);
      let off = 0;
      while (off < buf.length) {
        const { bytesRead } = await fh.read(buf, off, buf.length - off, start + off);
        if (bytesRead === 0) {
          throw new StorageError(`cannot read ${this.pathOf(key)}: file shrank while reading`, { transient: true });
        }
        off += bytesRead;
      }
      return buf;
    } catch (e) {
      throw fsError(e, 'read', this.pathOf(key), key);
    }
  }

  async getStream(key: string): Promise<Readable> {
    const fh = await this.openForRead(key);
    return fh.createReadStream();
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const p = this.pathOf(key);
    try {
      const st = await stat(p);
      if (!st.isFile()) return undefined;
      return { key, size: st.size, mtime: Math.floor(st.mtimeMs) };
    } catch (e) {
      const code = (e as Errno).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw fsError(e, 'stat', p);
    }
  }

  async listPage(prefix: string, cursor?: string, pageSize: number = DEFAULT_PAGE_SIZE): Promise<ListPage> {
    checkPrefix(prefix);
    if (!Number.isSafeInteger(pageSize) || pageSize < 1) {
      throw new StorageError(`invalid list page size ${pageSize}: must be a positive integer`);
    }
    const slash = prefix.lastIndexOf('/');
    const dirKey = prefix.slice(0, slash + 1);
    const dirPath = dirKey === '' ? this.root : join(this.root, ...dirKey.slice(0, -1).split('/'));
    const walk = this.walk(dirPath, dirKey, prefix.slice(slash + 1), cursor);
    const objects: ObjectInfo[] = [];
    for await (const o of walk) {
      // One object beyond the page proves there is more; the cursor is the last key returned.
      if (objects.length === pageSize) return { objects, cursor: objects[objects.length - 1].key };
      objects.push(o);
    }
    return { objects };
  }

  async delete(key: string): Promise<void> {
    const r = this.readers.get(key);
    if (r) {
      this.readers.delete(key);
      if (r.users === 0) await closeReader(r);
    }
    const p = this.pathOf(key);
    try {
      await unlink(p);
    } catch (e) {
      const code = (e as Errno).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return;
      throw fsError(e, 'delete', p);
    }
    await fsyncDir(dirname(p));
  }

  async close(): Promise<void> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const all = [...this.readers.values()];
    this.readers.clear();
    await Promise.all(all.map(closeReader));
  }

  /** Validated key -> absolute path inside the root. */
  private pathOf(key: string): string {
    checkKey(key);
    const segments = key.split('/');
    if (segments.some((s) => s.startsWith(TMP_PREFIX))) {
      throw new StorageError(`invalid storage key ${JSON.stringify(key)}: "${TMP_PREFIX}" names are reserved`);
    }
    return join(this.root, ...segments);
  }

  private async openForRead(key: string): Promise<FileHandle> {
    const p = this.pathOf(key);
    let fh: FileHandle;
    try {
      fh = await open(p, 'r');
    } catch (e) {
      throw fsError(e, 'read', p, key);
    }
    const st = await fh.stat().catch(async (e: unknown) => {
      await fh.close().catch(() => {});
      throw fsError(e, 'read', p, key);
    });
    if (!st.isFile()) {
      await fh.close().catch(() => {});
      throw new NotFoundError(`no object ${key} in ${this.location}`);
    }
    return fh;
  }

  /**
   * Writes a temp file with `write`, fsyncs it, publishes it under `key`, and
   * fsyncs the directory. The temp file is removed on any failure.
   */
  private async writeAtomic(key: string, opts: PutOptions | undefined, write: (fh: FileHandle) => Promise<void>): Promise<void> {
    const file = this.pathOf(key);
    const dir = dirname(file);
    // The parent chain is fsynced while the temp file is written; the object is published
    // only once both are durable.
    let ready = this.ensureDurableDir(dir);
    await ready.made;
    const tmp = join(dir, TMP_PREFIX + randomBytes(8).toString('hex'));
    let fh: FileHandle | undefined;
    let tmpExists = false;
    try {
      fh = await open(tmp, 'wx', this.fileMode).catch(async (e: Errno) => {
        if (e.code !== 'ENOENT') throw e;
        // The directory was removed since this process made it durable: make it again.
        this.durableDirs.delete(dir);
        ready = this.ensureDurableDir(dir);
        await ready.made;
        return open(tmp, 'wx', this.fileMode);
      });
      tmpExists = true;
      await write(fh);
      await fh.sync();
      await fh.close();
      fh = undefined;
      await ready.durable;
      if (opts?.ifNoneMatch) {
        try {
          await link(tmp, file);
        } catch (e) {
          if ((e as Errno).code === 'EEXIST') throw new AlreadyExistsError(`object ${key} already exists in ${this.location}`);
          throw e;
        }
        await unlink(tmp);
      } else {
        await rename(tmp, file);
      }
      tmpExists = false;
      await fsyncDir(dir);
    } catch (e) {
      throw fsError(e, 'write', file);
    } finally {
      if (fh) await fh.close().catch(() => {});
      if (tmpExists) await unlink(tmp).catch(() => {});
    }
  }

  /**
   * Creates `dir` if needed and fsyncs every directory between it and the root
   * (and above the root if this call created it), once per process per directory,
   * so a new object's directory entry chain is durable whoever created it.
   */
  private ensureDurableDir(dir: string): DirReady {
    let ready = this.durableDirs.get(dir);
    if (!ready) {
      const made = mkdir(dir, { recursive: true, mode: this.dirMode }).catch((e: unknown) => {
        throw fsError(e, 'create directory', dir);
      });
      const r: DirReady = { made: made.then(() => undefined), durable: made.then((first) => this.syncParents(dir, first)) };
      ready = r;
      this.durableDirs.set(dir, r);
      r.durable.catch(() => {
        if (this.durableDirs.get(dir) === r) this.durableDirs.delete(dir);
      });
    }
    return ready;
  }

  /** Fsyncs every directory above `dir` up to the root (above it too if mkdir created it: `first`). */
  private async syncParents(dir: string, first: string | undefined): Promise<void> {
    const createdRoot = first !== undefined && !first.startsWith(this.root + sep);
    const top = createdRoot ? dirname(first as string) : this.root;
    const parents: string[] = [];
    for (let d = dir; d !== top && d.length > top.length; ) {
      d = dirname(d);
      parents.push(d);
    }
    await Promise.all(parents.map(fsyncDir));
  }

  /**
   * Yields files under `dirPath` whose names start with `nameFilter` (top level
   * only), as keys prefixed by `keyPrefix`, in key order, skipping keys <= `after`.
   */
  private async *walk(dirPath: string, keyPrefix: string, nameFilter: string, after: string | undefined): AsyncGenerator<ObjectInfo> {
    let entries: Dirent[];
    try {
      entries = await readdir(dirPath, { withFileTypes: true });
    } catch (e) {
      const code = (e as Errno).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw fsError(e, 'list', dirPath);
    }
    // A directory sorts as `name/`, so walking in this order yields keys in string order.
    const items = entries
      .filter((e) => e.name.startsWith(nameFilter) && !e.name.startsWith(TMP_PREFIX))
      .map((e) => ({ e, sortKey: keyPrefix + e.name + (e.isDirectory() ? '/' : '') }))
      .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    // Files are stat'ed STAT_BATCH at a time (in order): one after another, each stat is a
    // round trip through the thread pool, and a WAL archive holds thousands of segments.
    const batch: { key: string; path: string }[] = [];
    const statBatch = async function* (files: { key: string; path: string }[]): AsyncGenerator<ObjectInfo> {
      const stats = await Promise.all(
        files.map((f) =>
          stat(f.path).catch((err: Errno) => {
            if (err.code === 'ENOENT') return undefined; // deleted during the listing
            throw fsError(err, 'list', f.path);
          }),
        ),
      );
      for (let i = 0; i < files.length; i++) {
        const st = stats[i];
        if (st) yield { key: files[i].key, size: st.size, mtime: Math.floor(st.mtimeMs) };
      }
    };
    for (const { e, sortKey } of items) {
      if (e.isDirectory()) {
        // Every key in this subtree starts with sortKey; skip it when all sort before the cursor.
        if (after !== undefined && sortKey < after && !after.startsWith(sortKey)) continue;
        if (batch.length) yield* statBatch(batch.splice(0));
        yield* this.walk(join(dirPath, e.name), sortKey, '', after);
      } else if (e.isFile()) {
        if (after !== undefined && sortKey <= after) continue;
        batch.push({ key: sortKey, path: join(dirPath, e.name) });
        if (batch.length === STAT_BATCH) yield* statBatch(batch.splice(0));
      }
    }
    if (batch.length) yield* statBatch(batch);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (e) {
    // Some filesystems cannot fsync a directory; there is nothing more to do there.
    if ((e as Errno).code === 'EINVAL' || (e as Errno).code === 'ENOTSUP') return;
    throw fsError(e, 'sync directory', dir);
  } finally {
    await fh?.close().catch(() => {});
  }
}

/**
 * Maps a Node fs error to a Ferry error naming `path`. With `key`, a missing file
 * is the missing object (NotFoundError). Errors that are not fs errors (for
 * instance from a caller's body stream) pass through unchanged.
 */
function fsError(e: unknown, verb: string, path: string, key?: string): Error {
  if (e instanceof FerryError) return e;
  const code = (e as Errno | undefined)?.code;
  if (typeof code !== 'string') return e instanceof Error ? e : new StorageError(`cannot ${verb} ${path}: ${String(e)}`);
  const what = `cannot ${verb} ${path}`;
  const opts = { cause: e };
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EISDIR':
      if (key !== undefined) return new NotFoundError(`no object ${key} at ${path}`, opts);
      return new StorageError(`${what}: a path component is missing or not a directory (${code})`, opts);
    case 'ENOSPC':
      return new StorageError(`${what}: no space left on device`, { ...opts, hint: 'free space on the repository filesystem and run again' });
    case 'EDQUOT':
      return new StorageError(`${what}: disk quota exceeded`, { ...opts, hint: 'raise the quota or free space, then run again' });
    case 'EACCES':
    case 'EPERM':
      return new StorageError(`${what}: permission denied`, { ...opts, hint: 'check the owner and mode of the repository directory' });
    case 'EROFS':
      return new StorageError(`${what}: read-only file system`, opts);
    case 'EIO':
      return new StorageError(`${what}: I/O error`, { ...opts, hint: 'check the disk and the kernel log (dmesg)' });
    case 'EEXIST':
      return new StorageError(`${what}: a file and a directory collide at this path`, opts);
    case 'EMFILE':
    case 'ENFILE':
    case 'EAGAIN':
    case 'EBUSY':
    case 'EINTR':
    case 'ETIMEDOUT':
      return new StorageError(`${what}: ${code} (temporary)`, { ...opts, transient: true });
    default:
      return new StorageError(`${what}: ${(e as Error).message}`, opts);
  }
}

async function closeReader(r: Reader): Promise<void> {
  await (await r.fh.catch(() => undefined))?.fh.close().catch(() => {});
}
