/**
 * The history of objects across snapshots: every version seen of a key, deletion
 * markers, the state of a prefix at a time, and reading a version back.
 *
 * A version id is the first 12 hex digits of the content checksum (SHA-256 over
 * the blob ids, equal iff the bytes are equal): stable across snapshots and
 * repositories, and the same whenever the same bytes come back.
 */
import { mkdir, writeFile, utimes } from 'node:fs/promises';
import { restoreTree } from '../repo/restore.ts';
import { dirname } from 'node:path';
import { listSnapshots, type SnapshotRef } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { readTree, type TreeNode } from '../repo/tree.ts';
import { mapLimit } from '../util/concurrency.ts';
import { ConfigError, IntegrityError, UsageError } from '../util/errors.ts';
import { OBJECTS_KIND, snapshotTime, type ObjectExtra } from './snapshot.ts';
import { pathUnder } from './source.ts';

export const VERSION_ID_LENGTH = 12;

export interface ObjectVersion {
  key: string;
  /** `deleted` marks the first snapshot in which the key was gone. */
  deleted: boolean;
  /** Version id (content checksum prefix); absent on deletion markers. */
  version?: string;
  /** Time of the first snapshot that saw this version (or the deletion). */
  time: string;
  /** Time of the last snapshot that still saw it. */
  lastSeen: string;
  snapshot: string;
  size?: number;
  mtime?: string;
  checksum?: string;
  etag?: string;
  /** The store's own version id, where the bucket keeps versions. */
  nativeVersionId?: string;
  /** The node to restore this version from (not printed). */
  node?: TreeNode;
}

export async function objectSnapshots(repo: Repository, asset: string): Promise<SnapshotRef[]> {
  const all = await listSnapshots(repo, { kind: OBJECTS_KIND, asset });
  return all.sort((a, b) => snapshotTime(a.manifest) - snapshotTime(b.manifest) || a.id.localeCompare(b.id));
}

/** Pure: folds what each snapshot (in time order) held at a key into versions and deletion markers. */
export function foldVersions(key: string, seen: { snapshot: string; time: number; node?: TreeNode }[]): ObjectVersion[] {
  const out: ObjectVersion[] = [];
  let cur: ObjectVersion | undefined;
  for (const s of seen) {
    const t = new Date(s.time).toISOString();
    if (!s.node) {
      if (cur && !cur.deleted) {
        cur = { key, deleted: true, time: t, lastSeen: t, snapshot: s.snapshot };
        out.push(cur);
      } else if (cur) cur.lastSeen = t;
      continue;
    }
    const checksum = s.node.checksum ?? '';
    if (cur && !cur.deleted && cur.checksum === checksum) {
      cur.lastSeen = t;
      continue;
    }
    const x = (s.node.extra ?? {}) as ObjectExtra;
    cur = {
      key,
      deleted: false,
      version: checksum.slice(0, VERSION_ID_LENGTH),
      time: t,
      lastSeen: t,
      snapshot: s.snapshot,
      size: s.node.size,
      mtime: new Date(Number(BigInt(s.node.mtimeNs) / 1_000_000n)).toISOString(),
      checksum,
      ...(x.etag ? { etag: x.etag } : {}),
      ...(x.versionId ? { nativeVersionId: x.versionId } : {}),
      node: s.node,
    };
    out.push(cur);
  }
  return out;
}

/** Every version of `key` seen across the asset's snapshots, oldest first. */
export async function objectVersions(repo: Repository, asset: string, key: string): Promise<ObjectVersion[]> {
  const snaps = await objectSnapshots(repo, asset);
  const seen: { snapshot: string; time: number; node?: TreeNode }[] = new Array(snaps.length);
  // Rounds of `--watch` that changed nothing share their tree: read each distinct tree once.
  const lookups = new Map<string, Promise<TreeNode | undefined>>();
  const find = async (tree: string[]): Promise<TreeNode | undefined> => {
    for await (const n of readTree(repo, tree)) {
      if (n.path === key) return n.type === 'file' ? n : undefined;
      if (n.path > key) return undefined;
    }
    return undefined;
  };
  await mapLimit(snaps, 4, async (s, i) => {
    const k = s.manifest.tree.join(',');
    if (!lookups.has(k)) lookups.set(k, find(s.manifest.tree));
    seen[i] = { snapshot: s.id, time: snapshotTime(s.manifest), node: await lookups.get(k) };
  });
  return foldVersions(key, seen);
}

/** Pure: the snapshot that shows the source as it was at `at` (the last one listed at or before it). */
export function snapshotAt<T extends SnapshotRef>(snaps: T[], at: number): T | undefined {
  let best: T | undefined;
  for (const s of snaps) if (snapshotTime(s.manifest) <= at) best = s;
  return best;
}

export function parseTime(v: string, flag: string): number {
  const t = Date.parse(v);
  if (!/^\d{4}-\d\d-\d\d/.test(v) || Number.isNaN(t)) throw new UsageError(`${flag} takes an ISO 8601 time such as 2026-11-24T12:00:00Z, got "${v}"`);
  return t;
}

/** Chooses the version to restore: by id (version or native id), by time, or the newest stored. */
export function chooseVersion(versions: ObjectVersion[], key: string, want: { version?: string; at?: number }): ObjectVersion {
  const stored = versions.filter((v) => !v.deleted);
  if (!stored.length) throw new ConfigError(`no snapshot holds ${JSON.stringify(key)}`, { hint: 'check the key with `ferry objects versions NAME KEY`' });
  if (want.version !== undefined) {
    const v = want.version;
    const m = stored.filter((x) => x.nativeVersionId === v || (/^[0-9a-f]{4,64}$/.test(v) && (x.checksum ?? '').startsWith(v)));
    const distinct = new Set(m.map((x) => x.checksum));
    if (!m.length) throw new ConfigError(`${JSON.stringify(key)} has no version ${v}`, { hint: `versions: ${stored.map((x) => x.version).join(', ')}` });
    if (distinct.size > 1) throw new ConfigError(`version prefix ${v} matches ${distinct.size} versions of ${JSON.stringify(key)}`, { hint: 'give more digits' });
    return m.at(-1)!;
  }
  if (want.at !== undefined) {
    const at = want.at;
    const before = versions.filter((x) => Date.parse(x.time) <= at);
    const cur = before.at(-1);
    if (!cur) throw new ConfigError(`no snapshot saw ${JSON.stringify(key)} at or before ${new Date(at).toISOString()}`, { hint: `its first version is from ${stored[0].time}` });
    if (cur.deleted) throw new ConfigError(`${JSON.stringify(key)} was deleted at ${new Date(at).toISOString()} (gone since the snapshot of ${cur.time})`, { hint: 'pick an earlier --at, or a --version from `ferry objects versions`' });
    return cur;
  }
  return stored.at(-1)!;
}

/** The bytes of a stored object, checked against its recorded size. */
export async function readNode(repo: Repository, node: TreeNode): Promise<Buffer> {
  await repo.loadIndex();
  const parts = await Promise.all((node.blobs ?? []).map((b) => repo.loadBlob(b)));
  const data = Buffer.concat(parts);
  if (data.length !== node.size) throw new IntegrityError(`object ${JSON.stringify(node.path)} restored ${data.length} bytes, its snapshot says ${node.size}`);
  return data;
}

export async function writeLocal(path: string, data: Buffer, mtimeNs: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, data);
  const s = Number(BigInt(mtimeNs) / 1000n) / 1e6;
  await utimes(path, s, s);
}

/** Nodes of the snapshot under `prefix` (a key prefix, not only whole folders). */
export async function nodesUnder(repo: Repository, snap: SnapshotRef, prefix: string): Promise<TreeNode[]> {
  const out: TreeNode[] = [];
  for await (const n of readTree(repo, snap.manifest.tree)) if (n.type === 'file' && n.path.startsWith(prefix)) out.push(n);
  return out;
}

export interface PrefixRestoreResult {
  snapshot: string;
  snapshotTime: string;
  objects: number;
  bytes: number;
}

/**
 * Writes every object under `prefix` as of `snap` under `dir` at its full key, through the
 * tree restore (coalesced range reads, opened on the thread pool). The caller checks `dir`
 * is empty; every key is checked to be a path under `dir` before anything is written.
 */
export async function restorePrefix(repo: Repository, snap: SnapshotRef, prefix: string, dir: string, onProgress?: (done: number, total: number) => void): Promise<PrefixRestoreResult> {
  const nodes = await nodesUnder(repo, snap, prefix);
  const parents = new Set(nodes.map((n) => dirname(pathUnder(dir, n.path))));
  // Bucket snapshots have no directory nodes: make the folders the keys imply.
  for (const p of parents) await mkdir(p, { recursive: true });
  const r = await restoreTree(repo, snap.manifest, dir, {
    force: true,
    include: (n) => (n.type === 'file' ? n.path.startsWith(prefix) : n.path.startsWith(prefix) || prefix.startsWith(n.path + '/')),
    ...(onProgress ? { onProgress: (p) => onProgress(p.filesDone, p.filesTotal) } : {}),
  });
  return { snapshot: snap.id, snapshotTime: new Date(snapshotTime(snap.manifest)).toISOString(), objects: r.files, bytes: r.bytes };
}
