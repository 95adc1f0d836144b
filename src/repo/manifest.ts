/**
 * Manifests: one sealed object per snapshot at `snapshots/<id>`, id = SHA-256 of
 * the stored bytes. A snapshot exists exactly when its manifest does, and the
 * manifest is written last (durability rule 2); forget deletes it first.
 * The file tree is not inline: it is JSON Lines stored as tree blobs (`tree`),
 * so unchanged trees dedup and listing snapshots stays cheap.
 */
import { hostname } from 'node:os';
import { DIRS } from './format.ts';
import type { Repository } from './repository.ts';
import { listAll } from '../storage/types.ts';
import { mapLimit } from '../util/concurrency.ts';
import { ConfigError, NotFoundError } from '../util/errors.ts';

export interface SnapshotStats {
  files: number;
  dirs: number;
  symlinks: number;
  /** Total plaintext size of all files. */
  bytes: number;
  /** Files read because new or changed since the parent. */
  filesRead: number;
  /** Files taken from the parent without reading. */
  filesUnchanged: number;
  /** Chunks of files read again that were known unchanged (BackupOptions.unchanged) and taken from the parent without hashing. */
  chunksReused?: number;
  newBlobs: number;
  /** Plaintext bytes of new blobs. */
  newBytes: number;
  /** Bytes added to the repository (packs). */
  storedBytes: number;
  durationMs: number;
}

export interface Manifest {
  version: 1;
  kind: string;
  asset: string;
  host: string;
  paths: string[];
  labels: string[];
  startTime: string;
  endTime: string;
  parent?: string;
  tree: string[];
  stats: SnapshotStats;
  /** Kind-specific metadata (PostgreSQL: system id, LSNs, fingerprint, …). */
  meta?: Record<string, unknown>;
}

export interface SnapshotRef {
  id: string;
  manifest: Manifest;
}

/** What a snapshot states about itself; `newManifest` fills in the rest. */
export type ManifestFields = Omit<Manifest, 'version' | 'host' | 'startTime' | 'endTime' | 'stats'> & {
  stats: Omit<SnapshotStats, 'newBlobs' | 'newBytes' | 'storedBytes' | 'durationMs'>;
};

/**
 * A manifest for a snapshot that started at `started` and ended at `end` (ms; default now):
 * format version, host, times, duration and the saver's counts, the same for every kind.
 */
export function newManifest(repo: Repository, started: number, saved: { newBlobs: number; newBytes: number; storedBytes: number }, m: ManifestFields, end = repo.clock.now()): Manifest {
  const { stats, ...rest } = m;
  return {
    version: 1,
    host: hostname(),
    startTime: new Date(started).toISOString(),
    endTime: new Date(end).toISOString(),
    ...rest,
    stats: { ...stats, newBlobs: saved.newBlobs, newBytes: saved.newBytes, storedBytes: saved.storedBytes, durationMs: end - started },
  };
}

export async function writeManifest(repo: Repository, m: Manifest): Promise<string> {
  return repo.saveJson(DIRS.snapshots, 'manifest', m);
}

export async function loadManifest(repo: Repository, id: string): Promise<Manifest> {
  return repo.loadJson<Manifest>(`${DIRS.snapshots}${id}`, 'manifest');
}

export async function listSnapshots(repo: Repository, filter?: { kind?: string; asset?: string }): Promise<SnapshotRef[]> {
  const ids: string[] = [];
  for await (const o of listAll(repo.storage, DIRS.snapshots)) ids.push(o.key.slice(DIRS.snapshots.length));
  const out: SnapshotRef[] = [];
  await mapLimit(ids, 8, async (id) => {
    try {
      const manifest = await loadManifest(repo, id);
      if (filter?.kind && manifest.kind !== filter.kind) return;
      if (filter?.asset && manifest.asset !== filter.asset) return;
      out.push({ id, manifest });
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e; // forgotten meanwhile
    }
  });
  out.sort((a, b) => a.manifest.endTime.localeCompare(b.manifest.endTime) || a.id.localeCompare(b.id));
  return out;
}

/** Resolves `latest`, a full id or a unique prefix (at least 4 hex digits). */
export async function resolveSnapshot(repo: Repository, ref: string, filter?: { kind?: string; asset?: string }): Promise<SnapshotRef> {
  const all = await listSnapshots(repo, filter);
  if (ref === 'latest') {
    const last = all.at(-1);
    if (!last) throw new ConfigError(`no snapshots in ${repo.location}${filter?.asset ? ` for ${filter.asset}` : ''}`);
    return last;
  }
  if (!/^[0-9a-f]{4,64}$/.test(ref)) throw new ConfigError(`"${ref}" is not a snapshot id`, { hint: 'give an id (or a prefix of 4+ hex digits) from `ferry snapshots`, or `latest`' });
  const m = all.filter((s) => s.id.startsWith(ref));
  if (m.length === 0) throw new ConfigError(`no snapshot ${ref} in ${repo.location}`, { hint: '`ferry snapshots` lists them' });
  if (m.length > 1) throw new ConfigError(`snapshot id prefix ${ref} matches ${m.length} snapshots`, { hint: 'give more digits' });
  return m[0];
}
