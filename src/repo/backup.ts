/**
 * The generic tree snapshot engine, reused for plain directories, PostgreSQL data
 * directories, object buckets mirrored to disk and secrets.
 *
 * Files unchanged since the parent snapshot (same type, size, mtime and inode) are
 * not read: their blob lists are taken from the parent. Changed files are read in
 * large slices, cut by the chunker chosen per file, and handed to the BlobSaver,
 * which compresses on the thread pool and uploads packs in parallel.
 * The manifest is written after the saver has flushed (packs, then index).
 */
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileChecksum } from '../codec/hash.ts';
import { mapLimit } from '../util/concurrency.ts';
import { BufferPool } from '../util/pool.ts';
import { scannableBuffer } from './gearscan.ts';
import { FerryError, StorageError } from '../util/errors.ts';
import { killPoint } from '../util/killpoint.ts';
import type { Chunker } from './chunker.ts';
import { newManifest, writeManifest, type Manifest } from './manifest.ts';
import type { Repository } from './repository.ts';
import { BlobSaver, type SaverOptions } from './saver.ts';
import { loadTree, saveTree, type TreeNode } from './tree.ts';

export interface BackupProgress {
  filesTotal: number;
  filesDone: number;
  bytesTotal: number;
  bytesDone: number;
  newBytes: number;
  storedBytes: number;
}

export interface BackupOptions {
  root: string;
  /**
   * More directories stored under a path of the tree, replacing whatever the main walk
   * found there (PostgreSQL tablespaces: `pg_tblspc/<oid>` is a symlink on disk, the
   * tablespace's files are stored beneath it as a directory).
   */
  extraRoots?: { prefix: string; root: string }[];
  kind: string;
  asset: string;
  labels?: string[];
  parent?: { id: string; manifest: Manifest };
  /** Chunker for one file (`prev`: its copy in the parent snapshot, if any); defaults to the repository's FastCDC. */
  chunkerFor?: (node: TreeNode, prev?: TreeNode) => Chunker;
  /** Return true to leave a path (relative) out of the snapshot. */
  exclude?: (relPath: string, isDir: boolean) => boolean;
  /** Called for every chunk saved (e.g. page checksum validation); not for chunks taken from the parent by `unchanged`. */
  inspect?: (node: TreeNode, offset: number, chunk: Buffer) => void;
  /**
   * For a file read again whose parent copy has a chunk of the same length at the same
   * offset: true when the chunk is certainly unchanged since the parent snapshot, so the
   * parent's blob is reused without hashing or sealing (PostgreSQL: every page in it is
   * older than the parent's start LSN).
   */
  unchanged?: (node: TreeNode, offset: number, chunk: Buffer) => boolean;
  /** Kind-specific metadata, computed after the files are stored. */
  meta?: () => Promise<Record<string, unknown>> | Record<string, unknown>;
  /** Extra nodes to add (e.g. backup_label written by PostgreSQL's backup stop). */
  extraFiles?: () => Promise<{ path: string; data: Buffer; mode: number }[]>;
  onProgress?: (p: BackupProgress) => void;
  /** Files read at once. */
  fileConcurrency?: number;
  saver?: SaverOptions;
  /** Skip the unchanged-file shortcut (re-read everything). */
  force?: boolean;
}

const READ_SLICE = 2 * 1024 * 1024;
/** A file's chunks read but not yet saved, beyond which it waits for the saver (and 8 chunks). */
const AHEAD_BYTES = 2 * READ_SLICE;

/** Walks `root` and returns nodes sorted by path (the root itself as ""). */
export async function walkTree(root: string, exclude?: (rel: string, isDir: boolean) => boolean): Promise<TreeNode[]> {
  const nodes: TreeNode[] = [];
  const rootSt = await lstat(root, { bigint: true }).catch((e: NodeJS.ErrnoException) => {
    throw new FerryError(`cannot read ${root}: ${e.code === 'ENOENT' ? 'no such directory' : e.message}`);
  });
  if (!rootSt.isDirectory()) throw new FerryError(`${root} is not a directory`);
  const visit = async (rel: string): Promise<void> => {
    const abs = rel ? join(root, rel) : root;
    let names: string[];
    try {
      names = await readdir(abs);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT') return; // removed while walking
      throw new FerryError(`cannot list ${abs}: ${err.message}`);
    }
    const subdirs: string[] = [];
    await mapLimit(names, 16, async (name) => {
      const r = rel ? `${rel}/${name}` : name;
      let st;
      try {
        st = await lstat(join(root, r), { bigint: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
      const isDir = st.isDirectory();
      if (exclude?.(r, isDir)) return;
      const node = statNode(r, st);
      if (!node) return; // sockets, fifos, devices are not backed up
      if (node.type === 'symlink') node.target = await readlink(join(root, r));
      nodes.push(node);
      if (isDir) subdirs.push(r);
    });
    for (const d of subdirs) await visit(d);
  };
  const rootNode = statNode('', rootSt)!;
  nodes.push(rootNode);
  await visit('');
  nodes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return nodes;
}

function statNode(path: string, st: import('node:fs').BigIntStats): TreeNode | undefined {
  const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : undefined;
  if (!type) return undefined;
  return {
    path,
    type,
    mode: Number(st.mode & 0o7777n),
    mtimeNs: st.mtimeNs.toString(),
    size: type === 'file' ? Number(st.size) : 0,
    uid: Number(st.uid),
    gid: Number(st.gid),
    ino: Number(st.ino),
  };
}

export async function backupTree(repo: Repository, opts: BackupOptions): Promise<{ id: string; manifest: Manifest }> {
  const started = repo.clock.now();
  // The index and the parent's tree load (mostly decryption on this thread) while the walk
  // waits on lstat calls in the thread pool.
  const parentTree = repo.loadIndex().then(() => (opts.parent && !opts.force ? loadTree(repo, opts.parent.manifest.tree) : []));
  parentTree.catch(() => undefined); // awaited below, after the walk
  let nodes = await walkTree(opts.root, opts.exclude);
  const absOf = new Map<TreeNode, string>();
  for (const x of opts.extraRoots ?? []) {
    const under = (p: string) => p === x.prefix || p.startsWith(x.prefix + '/');
    nodes = nodes.filter((n) => !under(n.path));
    for (const n of await walkTree(x.root, (rel, isDir) => opts.exclude?.(`${x.prefix}/${rel}`, isDir) ?? false)) {
      const path = n.path ? `${x.prefix}/${n.path}` : x.prefix;
      absOf.set(n, n.path ? join(x.root, n.path) : x.root);
      n.path = path;
      nodes.push(n);
    }
  }
  nodes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parentFiles = new Map<string, TreeNode>();
  for (const n of await parentTree) if (n.type === 'file') parentFiles.set(n.path, n);
  const saver = new BlobSaver(repo, opts.saver);
  // Room for one slice behind the uncut tail of the previous one (a tail is shorter than the largest chunk).
  // One buffer more than files read at once: a file gives its buffer back only after taking the
  // next one (its uncut tail is copied across), so with fewer they could all wait on each other.
  // FastCDC scans these buffers in WebAssembly and the codec workers read chunks straight out
  // of them (no copy); storeFile keeps a buffer's bytes unchanged until its chunks are sealed.
  // Two more than that, so that a large file read alone (the others done) has slices in flight.
  const pool = new BufferPool(READ_SLICE + repo.config.chunker.max, (opts.fileConcurrency ?? 4) + 3, (n) => repo.codec.lend(scannableBuffer(n)));
  const files = nodes.filter((n) => n.type === 'file');
  const progress: BackupProgress = {
    filesTotal: files.length,
    filesDone: 0,
    bytesTotal: files.reduce((a, n) => a + n.size, 0),
    bytesDone: 0,
    newBytes: 0,
    storedBytes: 0,
  };
  let filesRead = 0;
  let filesUnchanged = 0;
  let chunksReused = 0;
  const report = () => {
    progress.newBytes = saver.stats.newBytes;
    progress.storedBytes = saver.stats.storedBytes;
    opts.onProgress?.(progress);
  };
  const timer = opts.onProgress ? setInterval(report, 200) : undefined;
  try {
    await mapLimit(files, opts.fileConcurrency ?? 4, async (node) => {
      const prev = parentFiles.get(node.path);
      if (prev && prev.size === node.size && prev.mtimeNs === node.mtimeNs && prev.ino === node.ino && prev.blobs && prev.blobs.every((b) => repo.index.has(b))) {
        node.blobs = prev.blobs;
        node.lengths = prev.lengths;
        node.checksum = prev.checksum;
        if (prev.extra) node.extra = prev.extra;
        filesUnchanged++;
      } else {
        chunksReused += await storeFile(saver, opts, node, pool, absOf.get(node) ?? join(opts.root, node.path), prev);
        filesRead++;
      }
      progress.filesDone++;
      progress.bytesDone += node.size;
    });
    for (const f of (await opts.extraFiles?.()) ?? []) {
      const node: TreeNode = { path: f.path, type: 'file', mode: f.mode, mtimeNs: `${BigInt(repo.clock.now()) * 1_000_000n}`, size: f.data.length, uid: 0, gid: 0, ino: 0 };
      await storeBuffer(saver, node, f.data, opts.chunkerFor?.(node) ?? repo.newChunker());
      const at = nodes.findIndex((n) => n.path === f.path);
      if (at >= 0) nodes[at] = node;
      else nodes.push(node);
    }
    nodes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const tree = await saveTree(saver, repo, nodes);
    await saver.flush();
    report();
    const meta = opts.meta ? await opts.meta() : undefined;
    const manifest = newManifest(repo, started, saver.stats, {
      kind: opts.kind,
      asset: opts.asset,
      paths: [opts.root],
      labels: opts.labels ?? [],
      ...(opts.parent ? { parent: opts.parent.id } : {}),
      tree,
      stats: {
        files: files.length,
        dirs: nodes.filter((n) => n.type === 'dir').length,
        symlinks: nodes.filter((n) => n.type === 'symlink').length,
        bytes: progress.bytesTotal,
        filesRead,
        filesUnchanged,
        ...(opts.unchanged ? { chunksReused } : {}),
      },
      ...(meta ? { meta } : {}),
    });
    await killPoint('before-manifest');
    const id = await writeManifest(repo, manifest);
    return { id, manifest };
  } finally {
    if (timer) clearInterval(timer);
  }
}

async function storeBuffer(saver: BlobSaver, node: TreeNode, data: Buffer, chunker: Chunker): Promise<void> {
  const chunks = [...chunker.push(data), ...chunker.finish()];
  const ids = await Promise.all(chunks.map((c) => saver.save('data', c)));
  node.blobs = ids;
  node.lengths = chunks.map((c) => c.length);
  node.checksum = fileChecksum(ids);
  node.size = data.length;
}

/**
 * Reads one file in slices, chunks it and saves every chunk; fills node.blobs. `prev`: the
 * parent snapshot's copy, if any. Returns how many chunks were reused from it unread.
 */
async function storeFile(saver: BlobSaver, opts: BackupOptions, node: TreeNode, pool: BufferPool, abs: string, prev: TreeNode | undefined): Promise<number> {
  const chunker = opts.chunkerFor?.(node, prev) ?? saver.repository.newChunker();
  const saves: Promise<string>[] = [];
  const lengths: number[] = [];
  let offset = 0;
  let reused = 0;
  // The parent's chunk offsets, to find the chunk at the same place (only with `unchanged`).
  const prevBlobs = opts.unchanged && prev?.blobs && prev.lengths?.length === prev.blobs.length ? prev.blobs : undefined;
  const prevAt = new Map<number, number>();
  if (prevBlobs) for (let i = 0, o = 0; i < prevBlobs.length; o += prev!.lengths![i], i++) prevAt.set(o, i);
  const index = saver.repository.index;
  const take = (chunks: Buffer[]) => {
    for (const c of chunks) {
      const i = prevAt.get(offset);
      if (i !== undefined && prev!.lengths![i] === c.length && index.has(prevBlobs![i]) && opts.unchanged!(node, offset, c)) {
        // The parent's copy: inspected when it was stored, and the same bytes since.
        saves.push(Promise.resolve(prevBlobs![i]));
        reused++;
      } else {
        opts.inspect?.(node, offset, c);
        saves.push(saver.save('data', c, !prev));
      }
      offset += c.length;
      lengths.push(c.length);
    }
  };
  let fh;
  try {
    fh = await open(abs, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') {
      // Removed after the walk: record it as empty rather than fail the snapshot.
      node.size = 0;
      node.blobs = [];
      node.lengths = [];
      node.checksum = fileChecksum([]);
      return 0;
    }
    throw new StorageError(`cannot read ${abs}: ${err.message}`);
  }
  let total = 0;
  let waitFrom = 0;
  let savedBytes = 0;
  // The uncut tail of the previous slice, still inside its buffer; that buffer goes back to
  // the pool only once its chunks are sealed and the tail has been copied out.
  let carry: Buffer | undefined;
  let releasePrev: (() => void) | undefined;
  try {
    for (;;) {
      // Read straight behind the carried tail: only the tail is copied. Small files get a
      // buffer of their size (+1 to see the end in one read); large ones pooled buffers.
      const want = Math.min(READ_SLICE, Math.max(node.size - total, 0) + 1);
      const carried = carry?.length ?? 0;
      const pooled = carried + want > 1 << 20 && carried + want <= pool.size;
      const buf = pooled ? await pool.take() : Buffer.allocUnsafe(carried + want);
      if (carry) carry.copy(buf, 0);
      releasePrev?.();
      releasePrev = undefined;
      const { bytesRead } = await fh.read(buf, carried, want, null);
      total += bytesRead;
      // A short read of a regular file means its end.
      const eof = bytesRead < want;
      const { chunks, rest } = chunker.split(buf.subarray(0, carried + bytesRead), eof);
      const first = saves.length;
      take(chunks);
      carry = rest.length ? rest : undefined;
      if (pooled) {
        const sealed = Promise.allSettled(saves.slice(first));
        let copied = false;
        let done = false;
        const maybeGive = () => {
          if (copied && done) pool.give(buf);
        };
        void sealed.then(() => {
          done = true;
          maybeGive();
        });
        releasePrev = () => {
          copied = true;
          maybeGive();
        };
      }
      if (eof) break;
      // Keep memory bounded: do not read far ahead of the saver. A slice's chunks are sealed
      // in one batch on one worker, so a large file keeps more than one slice in flight: both
      // workers work on it (the pool bounds the buffers too).
      while (saves.length - waitFrom > 8 && offset - savedBytes > AHEAD_BYTES) {
        await saves[waitFrom];
        savedBytes += lengths[waitFrom++];
      }
    }
  } finally {
    releasePrev?.();
    await fh.close();
  }
  const ids = await Promise.all(saves);
  node.size = total; // the file may have grown or shrunk since the walk; record what was read
  node.blobs = ids;
  node.lengths = lengths;
  node.checksum = fileChecksum(ids);
  return reused;
}
