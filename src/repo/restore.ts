/**
 * Restores a snapshot's tree into a directory.
 *
 * Refuses a non-empty target unless told (`delta`: rewrite only what differs and
 * remove what the snapshot lacks; `force`: overwrite). Blobs are fetched in
 * coalesced ranges (adjacent blobs of one pack in one GET), opened (authenticated
 * and checked against their ids) on the thread pool, and written at their offsets.
 * A blob that fails its check stops the restore with the file and offset named.
 */
import { lstat, mkdir, open, readdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, constants, lchownSync, lutimesSync, utimesSync } from 'node:fs';
import { mapLimit } from '../util/concurrency.ts';
import { FerryError, IntegrityError } from '../util/errors.ts';
import type { BlobLocation } from './index.ts';
import type { Manifest } from './manifest.ts';
import { packKey } from './pack.ts';
import { RangeBuffers } from './rangebuffers.ts';
import type { Repository } from './repository.ts';
import { loadTree, type TreeNode } from './tree.ts';

export interface RestoreOptions {
  delta?: boolean;
  force?: boolean;
  /** Only restore nodes for which this returns true (paths relative). */
  include?: (node: TreeNode) => boolean;
  /** Own every restored path by this user (e.g. the cluster's OS user). Default: as recorded, when root. */
  owner?: { uid: number; gid: number };
  onProgress?: (p: RestoreProgress) => void;
  fileConcurrency?: number;
  /**
   * Subtrees written elsewhere, with a symlink left at their path (PostgreSQL
   * tablespaces: `pg_tblspc/<oid>` -> the tablespace directory). Each `dir` must be
   * empty or missing, like the target.
   */
  relocate?: { prefix: string; dir: string }[];
  /**
   * Runs once the tree is written, before the final sync: what the caller adds to the
   * restored tree there (PostgreSQL's recovery settings) is on disk when the restore returns.
   */
  beforeSync?: () => Promise<void>;
}

export interface RestoreProgress {
  filesTotal: number;
  filesDone: number;
  bytesTotal: number;
  bytesDone: number;
}

export interface RestoreResult {
  files: number;
  bytes: number;
  /** Bytes actually written (less than `bytes` in delta mode). */
  bytesWritten: number;
  filesSkipped: number;
  removed: number;
}

const MAX_RANGE = 16 * 1024 * 1024;
/** Bytes of other blobs a range GET of a restore reads and skips rather than end there (groupRanges). */
const MAX_GAP = 256 * 1024;
/** Files at least this large are written with O_DIRECT where possible (codec/write.ts). */
const DIRECT_FILE = 1024 * 1024;
/** Files up to this size go in the many-at-once lane. */
const SMALL_FILE = 1024 * 1024;
/** Range GETs in flight per file (restoreFile). */
const AHEAD = 3;
/** The small range buffers: one small file's blobs (compressed, or a little larger when they do not compress). */
const SMALL_RANGE = SMALL_FILE + 64 * 1024;

export async function isNonEmptyDir(dir: string): Promise<string[] | undefined> {
  try {
    const names = await readdir(dir);
    return names.length ? names : undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ENOTDIR') return [dir];
    throw e;
  }
}

export async function restoreTree(repo: Repository, manifest: Manifest, target: string, opts: RestoreOptions = {}): Promise<RestoreResult> {
  const existing = await isNonEmptyDir(target);
  if (existing && !opts.delta && !opts.force) {
    const shown = existing.slice(0, 5).join(', ') + (existing.length > 5 ? `, … (${existing.length} entries)` : '');
    throw new FerryError(`target directory ${target} is not empty (it holds ${shown}); restore would overwrite it`, {
      hint: 'restore into an empty or new directory, or pass --delta to rewrite only what differs (--force to overwrite)',
    });
  }
  for (const r of opts.relocate ?? []) {
    const busy = await isNonEmptyDir(r.dir);
    if (busy && !opts.delta && !opts.force) {
      throw new FerryError(`directory ${r.dir} (for ${r.prefix}) is not empty; restore would overwrite it`, {
        hint: 'map it elsewhere (e.g. --tablespace-map OID=DIR), or pass --delta / --force',
      });
    }
  }
  await repo.loadIndex();
  let nodes = await loadTree(repo, manifest.tree);
  if (opts.include) nodes = nodes.filter((n) => n.path === '' || opts.include!(n));
  const files = nodes.filter((n) => n.type === 'file');
  const progress: RestoreProgress = { filesTotal: files.length, filesDone: 0, bytesTotal: files.reduce((a, n) => a + n.size, 0), bytesDone: 0 };
  const result: RestoreResult = { files: files.length, bytes: progress.bytesTotal, bytesWritten: 0, filesSkipped: 0, removed: 0 };
  const timer = opts.onProgress ? setInterval(() => opts.onProgress!(progress), 200) : undefined;
  const asRoot = process.getuid?.() === 0;
  const relocate = opts.relocate ?? [];
  const place = (path: string): string => {
    for (const r of relocate) {
      if (path === r.prefix) return r.dir;
      if (path.startsWith(r.prefix + '/')) return join(r.dir, path.slice(r.prefix.length + 1));
    }
    return path ? join(target, path) : target;
  };
  try {
    await mkdir(target, { recursive: true });
    const wanted = new Set(nodes.map((n) => n.path));
    if (opts.delta && existing) result.removed = await removeExtra(target, '', wanted, nodes);
    // Relocated subtrees: a symlink at the prefix (after delta cleanup, which would see a symlink where the tree has a directory).
    for (const r of relocate) {
      await mkdir(r.dir, { recursive: true });
      const link = join(target, r.prefix);
      await mkdir(join(link, '..'), { recursive: true });
      await rm(link, { force: true, recursive: true });
      await symlink(r.dir, link);
    }
    for (const n of nodes) if (n.type === 'dir' && n.path) await mkdir(place(n.path), { recursive: true });
    // Two lanes: a few large files at a time (each keeps several ranges of up to MAX_RANGE in
    // flight), and many small ones, whose cost is latency (create, one read, one worker round
    // trip, close) rather than bytes: more of them in flight keeps the workers' batches full.
    const large = opts.fileConcurrency ?? 4;
    // As many range buffers as the lanes keep ranges in flight: large files AHEAD each, small
    // files mostly one (more wait for a buffer). At most about 4 x 3 x 16 + 64 x 1 MiB.
    const ranges = new RangeBuffers(repo.codec, SMALL_RANGE, large * 16, MAX_RANGE, large * AHEAD);
    const one = async (n: TreeNode) => {
      const written = await restoreFile(repo, n, place(n.path), !!opts.delta, progress, ranges);
      result.bytesWritten += written;
      if (written === 0 && n.size > 0) result.filesSkipped++;
      progress.filesDone++;
    };
    await Promise.all([
      mapLimit(files.filter((n) => n.size > SMALL_FILE), large, one),
      mapLimit(files.filter((n) => n.size <= SMALL_FILE), large * 8, one),
    ]);
    for (const n of nodes.filter((x) => x.type === 'symlink')) {
      const p = place(n.path);
      await rm(p, { force: true, recursive: true });
      await symlink(n.target!, p);
    }
    // Metadata last, deepest paths first, so setting a directory's mtime is not undone by writes
    // inside it. Synchronous calls: three tiny syscalls per path cost far less than three trips
    // through the thread pool (a data directory has about a thousand files).
    for (const n of [...nodes].reverse()) {
      const p = place(n.path);
      const owner = opts.owner ?? (asRoot ? { uid: n.uid, gid: n.gid } : undefined);
      const mtime = Number(BigInt(n.mtimeNs) / 1000n) / 1e6;
      if (n.type === 'symlink') {
        try {
          if (owner) lchownSync(p, owner.uid, owner.gid);
          lutimesSync(p, mtime, mtime);
        } catch {
          // best effort for links
        }
        continue;
      }
      if (owner) chownSync(p, owner.uid, owner.gid);
      chmodSync(p, n.mode);
      utimesSync(p, mtime, mtime);
    }
  } finally {
    if (timer) clearInterval(timer);
  }
  await opts.beforeSync?.();
  // One filesystem sync at the end instead of one fsync per file.
  await syncFs(target);
  for (const r of opts.relocate ?? []) await syncFs(r.dir);
  opts.onProgress?.(progress);
  return result;
}

/** Flushes the filesystem holding `path` (coreutils `sync -f`, i.e. syncfs). */
function syncFs(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('sync', ['-f', path], (err) => (err ? reject(new FerryError(`cannot sync ${path} to disk: ${err.message}`)) : resolve()));
  });
}

/** Removes paths under target that the snapshot does not have (delta mode). */
async function removeExtra(target: string, rel: string, wanted: Set<string>, nodes: TreeNode[]): Promise<number> {
  const types = new Map(nodes.map((n) => [n.path, n.type]));
  let removed = 0;
  const names = await readdir(rel ? join(target, rel) : target);
  for (const name of names) {
    const r = rel ? `${rel}/${name}` : name;
    const st = await lstat(join(target, r));
    const kind = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file';
    if (!wanted.has(r) || types.get(r) !== kind) {
      await rm(join(target, r), { recursive: true, force: true });
      removed++;
    } else if (kind === 'dir') removed += await removeExtra(target, r, wanted, nodes);
  }
  return removed;
}

export interface Piece {
  id: string;
  loc: BlobLocation;
  fileOffset: number;
}

/** The pieces of one pack that one range GET, of bytes [start, end), reads. */
interface Group {
  packId: string;
  start: number;
  end: number;
  pieces: Piece[];
}

/**
 * Groups a file's blobs into ranges of one pack, for one range GET each. Each piece is
 * written at its own offset in the file, so a range follows the pack's order, not the
 * file's: a file's chunks land in a pack nearly in file order, but the codec workers
 * seal batches side by side and the files backed up at once share packs. Packs come in
 * the order the file first uses them. A range reads past gaps of up to MAX_GAP bytes
 * (other blobs) rather than ending there, and covers a blob the file holds twice (a
 * page of zeros) once. Ranges are at most MAX_RANGE bytes.
 */
export function groupRanges(pieces: Piece[]): Group[] {
  const byPack = new Map<string, Piece[]>();
  for (const p of pieces) {
    const list = byPack.get(p.loc.packId);
    if (list) list.push(p);
    else byPack.set(p.loc.packId, [p]);
  }
  const groups: Group[] = [];
  for (const [packId, list] of byPack) {
    list.sort((a, b) => a.loc.offset - b.loc.offset || a.fileOffset - b.fileOffset);
    let g: Group | undefined;
    for (const p of list) {
      const end = p.loc.offset + p.loc.length;
      if (g && p.loc.offset <= g.end + MAX_GAP && Math.max(g.end, end) - g.start <= MAX_RANGE) {
        g.pieces.push(p);
        g.end = Math.max(g.end, end);
      } else {
        g = { packId, start: p.loc.offset, end, pieces: [p] };
        groups.push(g);
      }
    }
  }
  return groups;
}

async function restoreFile(repo: Repository, node: TreeNode, path: string, delta: boolean, progress: RestoreProgress, ranges: RangeBuffers): Promise<number> {
  const ids = node.blobs ?? [];
  let pieces: Piece[] = [];
  let off = 0;
  for (const id of ids) {
    const loc = repo.index.lookup(id);
    if (!loc) throw new IntegrityError(`cannot restore ${node.path}: blob ${id.slice(0, 16)} at offset ${off} is missing from the repository`, { hint: 'run `ferry repo check`' });
    pieces.push({ id, loc, fileOffset: off });
    off += loc.rawLength;
  }
  let fh;
  if (delta) {
    const st = await lstat(path).catch(() => undefined);
    if (st && !st.isFile()) await rm(path, { recursive: true, force: true });
    fh = await open(path, st?.isFile() ? 'r+' : 'w');
    if (st?.isFile()) pieces = await differing(repo, fh, pieces, st.size);
    await fh.truncate(off);
  } else {
    fh = await open(path, 'w');
  }
  // Large files also get an O_DIRECT descriptor: whole pages skip the page cache (codec/write.ts).
  const direct = off >= DIRECT_FILE ? await open(path, constants.O_WRONLY | constants.O_DIRECT).catch(() => undefined) : undefined;
  let written = 0;
  try {
    const groups = groupRanges(pieces);
    const fd = fh.fd;
    const fetchGroup = async (g: Group) => {
      const into = await ranges.take(g.end - g.start);
      try {
        await openGroup(g, into);
      } finally {
        if (into) ranges.give(into);
      }
    };
    // Reads the range (into the lent buffer when there is one) and opens its pieces. Every
    // piece settles before this returns, so no worker still reads the buffer when it is
    // given back, even when one piece fails.
    const openGroup = async (g: Group, into: Buffer | undefined) => {
      const first = g.pieces[0];
      const len = g.end - g.start;
      const where = `pack ${g.packId.slice(0, 16)}`;
      let buf: Buffer;
      try {
        buf = await repo.storage.get(packKey(g.packId), { offset: g.start, length: len, immutable: true, into });
      } catch (e) {
        throw new IntegrityError(`cannot restore ${node.path} at offset ${first.fileOffset}: ${(e as Error).message}`, { cause: e });
      }
      if (buf.length !== len) throw new IntegrityError(`cannot restore ${node.path} at offset ${first.fileOffset}: ${where} is truncated`);
      const settled = await Promise.allSettled(
        g.pieces.map(async (p) => {
          const rel = p.loc.offset - g.start;
          try {
            // Opened and written to the file on a worker (adjacent blobs in one write).
            const n = await repo.codec.openTo(Buffer.from(p.id, 'hex'), buf.subarray(rel, rel + p.loc.length), p.loc.rawLength, where, fd, p.fileOffset, direct?.fd);
            written += n;
            progress.bytesDone += n;
          } catch (e) {
            const Err = e instanceof IntegrityError ? IntegrityError : FerryError;
            throw new Err(`cannot restore ${node.path} at offset ${p.fileOffset}: ${(e as Error).message}`, { cause: e });
          }
        }),
      );
      const failed = settled.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    };
    // Fetch a few groups ahead.
    const inflight: Promise<void>[] = [];
    let fetched = 0;
    const fill = () => {
      while (fetched < groups.length && inflight.length < AHEAD) {
        const p = fetchGroup(groups[fetched++]);
        p.catch(() => undefined);
        inflight.push(p);
      }
    };
    fill();
    while (inflight.length) {
      await inflight.shift()!;
      fill();
    }
    if (!delta && off !== node.size) await fh.truncate(off);
  } finally {
    await direct?.close();
    await fh.close();
  }
  return written;
}

/** In delta mode: keeps only pieces whose bytes on disk differ from the snapshot. */
async function differing(repo: Repository, fh: import('node:fs/promises').FileHandle, pieces: Piece[], size: number): Promise<Piece[]> {
  const out: Piece[] = [];
  for (const p of pieces) {
    if (p.fileOffset + p.loc.rawLength > size) {
      out.push(p);
      continue;
    }
    const buf = Buffer.allocUnsafe(p.loc.rawLength);
    const { bytesRead } = await fh.read(buf, 0, buf.length, p.fileOffset);
    if (bytesRead !== buf.length || (await repo.codec.hash(buf)).toString('hex') !== p.id) out.push(p);
  }
  return out;
}
