/**
 * Object sources: what `ferry objects` snapshots and restores into. An `s3` asset
 * is a bucket prefix on any S3-compatible store (keys are the full object keys);
 * a `directory` asset is a local tree (keys are paths relative to it, POSIX-style).
 * The S3 side is loaded on first use so that commands on directories never load the SDK.
 */
import { lstat, mkdir, readFile, rename, utimes, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { DirectoryAsset, S3Asset } from '../config/assets.ts';
import { walkTree } from '../repo/backup.ts';
import { FerryError } from '../util/errors.ts';

export interface ObjectEntry {
  key: string;
  size: number;
  /** Modification time, ms since the epoch. */
  mtimeMs: number;
  /** Exact modification time in ns (directories), to tell changes apart within one millisecond. */
  mtimeNs?: string;
  /** S3 ETag (quotes stripped); absent on directories. */
  etag?: string;
  /** Native version id, where the store keeps versions. */
  versionId?: string;
}

export interface ObjectSource {
  /** e.g. `s3://bucket/prefix` or the directory's absolute path. */
  readonly location: string;
  /** Every object under the asset, sorted by key. */
  list(): Promise<ObjectEntry[]>;
  /** The object's bytes and what the store says of the version read (undefined when it is gone). */
  read(key: string): Promise<{ data: Buffer; entry: ObjectEntry } | undefined>;
  /** The current object, or undefined. */
  stat(key: string): Promise<ObjectEntry | undefined>;
  /** Writes (replaces) the object; `mtimeMs` is kept where the store allows it (directories). */
  write(key: string, data: Buffer, mtimeMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Keys that are safe as relative paths: no absolute path, no `..` segment, no empty segment. */
export function safeRelative(key: string): boolean {
  if (key === '' || key.startsWith('/') || key.includes('\0')) return false;
  return key.split('/').every((s, i, all) => s !== '..' && s !== '.' && (s !== '' || i === all.length - 1));
}

/** Where key lands under `dir`; throws for keys that would escape it. */
export function pathUnder(dir: string, key: string): string {
  const p = resolve(dir, key);
  if (!safeRelative(key) || key.endsWith('/') || relative(dir, p).startsWith('..') || !p.startsWith(resolve(dir) + sep)) {
    throw new FerryError(`object key ${JSON.stringify(key)} cannot be written as a path under ${dir}`, { hint: 'restore it alone with --to PATH' });
  }
  return p;
}

export class DirectorySource implements ObjectSource {
  readonly location: string;
  constructor(root: string) {
    this.location = resolve(root);
  }

  async list(): Promise<ObjectEntry[]> {
    const nodes = await walkTree(this.location);
    return nodes.filter((n) => n.type === 'file').map((n) => ({ key: n.path, size: n.size, mtimeMs: Number(BigInt(n.mtimeNs) / 1_000_000n), mtimeNs: n.mtimeNs }));
  }

  async stat(key: string): Promise<ObjectEntry | undefined> {
    try {
      const st = await lstat(join(this.location, key));
      return st.isFile() ? { key, size: st.size, mtimeMs: st.mtimeMs } : undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw e;
    }
  }

  async read(key: string): Promise<{ data: Buffer; entry: ObjectEntry } | undefined> {
    const path = join(this.location, key);
    try {
      const st = await lstat(path, { bigint: true });
      const data = await readFile(path);
      return { data, entry: { key, size: data.length, mtimeMs: Number(st.mtimeNs / 1_000_000n), mtimeNs: st.mtimeNs.toString() } };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new FerryError(`cannot read ${path}: ${(e as Error).message}`);
    }
  }

  async write(key: string, data: Buffer, mtimeMs?: number): Promise<void> {
    const path = pathUnder(this.location, key);
    await mkdir(dirname(path), { recursive: true });
    // Beside it, then renamed over: a reader never sees a half-written file.
    const tmp = `${path}.ferry-restore-${process.pid}`;
    await writeFile(tmp, data);
    if (mtimeMs !== undefined) await utimes(tmp, mtimeMs / 1000, mtimeMs / 1000);
    await rename(tmp, path);
  }

  async close(): Promise<void> {}
}

/** The source of an `s3` or `directory` asset; a relative directory path is relative to `baseDir` (ferry.yaml's folder). */
export async function openSource(asset: S3Asset | DirectoryAsset, baseDir = process.cwd()): Promise<ObjectSource> {
  if (asset.type === 'directory') return new DirectorySource(resolve(baseDir, asset.path));
  const { S3Source } = await import('./s3source.ts');
  return new S3Source(asset);
}
