/**
 * Incremental snapshots of an object source (bucket prefix or directory), stored
 * through the repository engine: contents are chunked, deduplicated and sealed like
 * any file; the listing is a snapshot tree (kind `objects`) whose nodes are the
 * object keys with size, mtime, checksum and, in `extra`, the ETag and the native
 * version id. An object is read only when it is new or changed since the parent
 * snapshot (ETag and size on S3; size and mtime on directories). A key absent from
 * the listing is deleted; the manifest's meta counts (and names) the deletions.
 */
import { fileChecksum } from '../codec/hash.ts';
import { newManifest, writeManifest, type Manifest, type SnapshotRef } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { BlobSaver } from '../repo/saver.ts';
import { loadTree, saveTree, type TreeNode } from '../repo/tree.ts';
import { mapLimit } from '../util/concurrency.ts';
import { DirectorySource, type ObjectEntry, type ObjectSource } from './source.ts';
import { backupTree } from '../repo/backup.ts';

export const OBJECTS_KIND = 'objects';
/** Deleted keys named in a manifest's meta (the count is always exact). */
const MAX_NAMED_DELETIONS = 1000;

export interface ObjectsMeta {
  location: string;
  /** When the listing was taken: the snapshot shows the source as it was then. */
  listedAt: string;
  added: number;
  changed: number;
  unchanged: number;
  deleted: number;
  deletedKeys: string[];
}

export interface ObjectsProgress {
  objectsTotal: number;
  objectsDone: number;
  /** Objects read so far (-1 where not counted). */
  objectsRead: number;
  /** Bytes read (S3), or bytes of objects done (directories). */
  bytesRead: number;
}

export interface ObjectsSnapshotOptions {
  asset: string;
  parent?: SnapshotRef;
  labels?: string[];
  /** Objects read at once. */
  concurrency?: number;
  onProgress?: (p: ObjectsProgress) => void;
}

export interface ObjectExtra {
  etag?: string;
  versionId?: string;
}

function mtimeNsOf(e: ObjectEntry): string {
  return e.mtimeNs ?? (BigInt(Math.round(e.mtimeMs)) * 1_000_000n).toString();
}

/** Pure: may the parent's node stand for this listed object without reading it? */
export function unchanged(prev: TreeNode | undefined, e: ObjectEntry): boolean {
  if (!prev || prev.size !== e.size) return false;
  const etag = (prev.extra as ObjectExtra | undefined)?.etag;
  if (e.etag !== undefined || etag !== undefined) return etag === e.etag;
  return prev.mtimeNs === mtimeNsOf(e);
}

export function objectsMeta(m: Manifest): ObjectsMeta | undefined {
  return m.meta as ObjectsMeta | undefined;
}

/** The time a snapshot shows its source at (the listing time). */
export function snapshotTime(m: Manifest): number {
  return Date.parse(objectsMeta(m)?.listedAt ?? m.startTime);
}

export async function snapshotObjects(repo: Repository, source: ObjectSource, opts: ObjectsSnapshotOptions): Promise<{ id: string; manifest: Manifest }> {
  if (source instanceof DirectorySource) return snapshotDirectory(repo, source, opts);
  const started = repo.clock.now();
  await repo.loadIndex();
  const listing = await source.list();
  const listedAt = repo.clock.now();
  const parentNodes = new Map<string, TreeNode>();
  if (opts.parent) for (const n of await loadTree(repo, opts.parent.manifest.tree)) if (n.type === 'file') parentNodes.set(n.path, n);
  const saver = new BlobSaver(repo);
  const progress: ObjectsProgress = { objectsTotal: listing.length, objectsDone: 0, objectsRead: 0, bytesRead: 0 };
  const timer = opts.onProgress ? setInterval(() => opts.onProgress!(progress), 200) : undefined;
  const nodes: TreeNode[] = [];
  let added = 0;
  let changed = 0;
  let kept = 0;
  try {
    await mapLimit(listing, opts.concurrency ?? 8, async (e) => {
      const prev = parentNodes.get(e.key);
      if (prev && unchanged(prev, e) && (prev.blobs ?? []).every((b) => repo.index.has(b))) {
        nodes.push(prev);
        kept++;
      } else {
        const r = await source.read(e.key);
        if (r) {
          const chunker = repo.newChunker();
          const chunks = [...chunker.push(r.data), ...chunker.finish()];
          const blobs = await Promise.all(chunks.map((c) => saver.save('data', c)));
          // What was read wins over the listing: the object may have changed in between.
          const got = { ...e, ...r.entry, etag: r.entry.etag ?? e.etag };
          const extra: ObjectExtra = { ...(got.etag ? { etag: got.etag } : {}), ...(got.versionId ? { versionId: got.versionId } : {}) };
          nodes.push({
            path: e.key,
            type: 'file',
            mode: 0o644,
            mtimeNs: mtimeNsOf(got),
            size: r.data.length,
            uid: 0,
            gid: 0,
            ino: 0,
            blobs,
            lengths: chunks.map((c) => c.length),
            checksum: fileChecksum(blobs),
            ...(Object.keys(extra).length ? { extra: extra as Record<string, unknown> } : {}),
          });
          if (prev) changed++;
          else added++;
          progress.objectsRead++;
          progress.bytesRead += r.data.length;
        }
      }
      progress.objectsDone++;
    });
    const present = new Set(nodes.map((n) => n.path));
    // The folders the keys imply, as directory nodes, so the tree restores like any other
    // (`ferry files restore` included). A key that is also a folder of others stays a file.
    const dirs = new Set<string>();
    for (const k of present) for (let i = k.indexOf('/'); i > 0; i = k.indexOf('/', i + 1)) dirs.add(k.slice(0, i));
    const dirMtime = (BigInt(listedAt) * 1_000_000n).toString();
    for (const d of dirs) if (!present.has(d)) nodes.push({ path: d, type: 'dir', mode: 0o755, mtimeNs: dirMtime, size: 0, uid: 0, gid: 0, ino: 0 });
    nodes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const tree = await saveTree(saver, repo, nodes);
    await saver.flush();
    const files = nodes.filter((n) => n.type === 'file');
    const meta = newObjectsMeta(source.location, listedAt, { added, changed, kept }, parentNodes.keys(), present);
    const manifest = newManifest(repo, started, saver.stats, {
      kind: OBJECTS_KIND,
      asset: opts.asset,
      paths: [source.location],
      labels: opts.labels ?? [],
      ...(opts.parent ? { parent: opts.parent.id } : {}),
      tree,
      stats: {
        files: files.length,
        dirs: nodes.length - files.length,
        symlinks: 0,
        bytes: files.reduce((a, n) => a + n.size, 0),
        filesRead: added + changed,
        filesUnchanged: kept,
      },
      meta: meta as unknown as Record<string, unknown>,
    });
    const id = await writeManifest(repo, manifest);
    return { id, manifest };
  } finally {
    if (timer) clearInterval(timer);
  }
}

/**
 * A directory is a tree: the generic engine snapshots it (its pooled, sliced read path is the
 * fastest Ferry has), as kind `objects`; its tree also holds the directories, which the object
 * commands skip. The counts come from a listing taken just before, against the parent's files.
 */
/** The manifest meta of an objects snapshot: the counts, and the parent's keys no longer listed. */
function newObjectsMeta(location: string, listedAt: number, n: { added: number; changed: number; kept: number }, parentKeys: Iterable<string>, present: Set<string>): ObjectsMeta {
  const deletedKeys = [...parentKeys].filter((k) => !present.has(k)).sort();
  return {
    location,
    listedAt: new Date(listedAt).toISOString(),
    added: n.added,
    changed: n.changed,
    unchanged: n.kept,
    deleted: deletedKeys.length,
    deletedKeys: deletedKeys.slice(0, MAX_NAMED_DELETIONS),
  };
}

async function snapshotDirectory(repo: Repository, source: DirectorySource, opts: ObjectsSnapshotOptions): Promise<{ id: string; manifest: Manifest }> {
  await repo.loadIndex();
  const listing = await source.list();
  const listedAt = repo.clock.now();
  const parentNodes = new Map<string, TreeNode>();
  if (opts.parent) for (const n of await loadTree(repo, opts.parent.manifest.tree)) if (n.type === 'file') parentNodes.set(n.path, n);
  let added = 0;
  let changed = 0;
  let kept = 0;
  for (const e of listing) {
    const prev = parentNodes.get(e.key);
    if (!prev) added++;
    else if (unchanged(prev, e)) kept++;
    else changed++;
  }
  const meta = newObjectsMeta(source.location, listedAt, { added, changed, kept }, parentNodes.keys(), new Set(listing.map((e) => e.key)));
  return backupTree(repo, {
    root: source.location,
    kind: OBJECTS_KIND,
    asset: opts.asset,
    labels: opts.labels,
    parent: opts.parent,
    meta: () => meta as unknown as Record<string, unknown>,
    ...(opts.onProgress ? { onProgress: (p) => opts.onProgress!({ objectsTotal: p.filesTotal, objectsDone: p.filesDone, objectsRead: -1, bytesRead: p.bytesDone }) } : {}),
  });
}
