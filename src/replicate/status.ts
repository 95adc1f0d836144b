/**
 * What `ferry status` reports about a repository and, optionally, a copy of it:
 * snapshot counts, the newest snapshot and WAL segment with their ages, and the
 * copy lag; and the same figures in the Prometheus text format.
 */
import { listSnapshots } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { DIRS } from '../repo/format.ts';
import { listAll, type ObjectInfo, type Storage } from '../storage/types.ts';
import { checkPair, listDest, listSource } from './copy.ts';
import { copyLag, type CopyLag } from './plan.ts';

export interface RepoStatus {
  location: string;
  repositoryId: string;
  snapshots: {
    total: number;
    byKind: Record<string, number>;
    newest?: { id: string; kind: string; asset: string; endTime: string; ageSeconds: number };
  };
  wal: {
    /** WAL objects stored (segments, history and backup files). */
    objects: number;
    newest?: { name: string; stored: string; ageSeconds: number };
  };
  copy?: {
    destination: string;
    /** The destination has the repository's config (a copy was started). */
    initialized: boolean;
    snapshots: number;
    walObjects: number;
    lag: CopyLag;
  };
}

const SEGMENT = /^[0-9A-F]{24}(\.partial)?$/;

/** The newest WAL segment by name (timeline, then position), among segments. */
export function newestWal(objects: ObjectInfo[]): ObjectInfo | undefined {
  let best: ObjectInfo | undefined;
  let bestName = '';
  for (const o of objects) {
    const name = o.key.slice(o.key.lastIndexOf('/') + 1);
    if (!SEGMENT.test(name)) continue;
    if (name.slice(0, 24) > bestName.slice(0, 24)) {
      best = o;
      bestName = name;
    }
  }
  return best;
}

export async function repoStatus(repo: Repository, now: number, copyTo?: Storage): Promise<RepoStatus> {
  const snaps = await listSnapshots(repo);
  const byKind: Record<string, number> = {};
  for (const s of snaps) byKind[s.manifest.kind] = (byKind[s.manifest.kind] ?? 0) + 1;
  const last = snaps.at(-1);
  const wal: ObjectInfo[] = [];
  for await (const o of listAll(repo.storage, DIRS.wal)) wal.push(o);
  const w = newestWal(wal);
  const status: RepoStatus = {
    location: repo.location,
    repositoryId: repo.id,
    snapshots: {
      total: snaps.length,
      byKind,
      ...(last
        ? {
            newest: {
              id: last.id,
              kind: last.manifest.kind,
              asset: last.manifest.asset,
              endTime: last.manifest.endTime,
              ageSeconds: Math.max(0, (now - Date.parse(last.manifest.endTime)) / 1000),
            },
          }
        : {}),
    },
    wal: {
      objects: wal.length,
      ...(w ? { newest: { name: w.key.slice(w.key.lastIndexOf('/') + 1), stored: new Date(w.mtime).toISOString(), ageSeconds: Math.max(0, (now - w.mtime) / 1000) } } : {}),
    },
  };
  if (copyTo) {
    const { destHasConfig } = await checkPair(repo.storage, copyTo);
    const src = await listSource(repo.storage);
    const dest = await listDest(copyTo);
    let snapshots = 0;
    let walObjects = 0;
    for (const k of dest.keys()) {
      if (k.startsWith(DIRS.snapshots)) snapshots++;
      else if (k.startsWith(DIRS.wal)) walObjects++;
    }
    status.copy = { destination: copyTo.location, initialized: destHasConfig, snapshots, walObjects, lag: copyLag(src, dest, now) };
  }
  return status;
}

function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** The status as Prometheus text exposition (for node_exporter's textfile collector or a scrape). */
export function metricsText(s: RepoStatus): string {
  const lines: string[] = [];
  const repo = `repository="${labelValue(s.location)}"`;
  const gauge = (name: string, help: string, samples: [labels: string, value: number][]): void => {
    if (samples.length === 0) return;
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [labels, value] of samples) lines.push(`${name}{${labels}} ${Number.isInteger(value) ? value : value.toFixed(3)}`);
  };
  gauge(
    'ferry_snapshots',
    'Snapshots in the repository, by kind.',
    Object.entries(s.snapshots.byKind).map(([kind, n]) => [`${repo},kind="${labelValue(kind)}"`, n]),
  );
  gauge('ferry_newest_snapshot_age_seconds', 'Seconds since the newest snapshot ended.', s.snapshots.newest ? [[repo, s.snapshots.newest.ageSeconds]] : []);
  gauge('ferry_wal_objects', 'WAL segments and history files stored.', [[repo, s.wal.objects]]);
  gauge('ferry_newest_wal_age_seconds', 'Seconds since the newest WAL segment was stored.', s.wal.newest ? [[repo, s.wal.newest.ageSeconds]] : []);
  if (s.copy) {
    const c = s.copy;
    const l = (kind: string) => `${repo},destination="${labelValue(c.destination)}",kind="${kind}"`;
    gauge('ferry_copy_lag_seconds', 'Seconds since the oldest object of this kind not yet at the copy was stored at the source (0 when caught up).', [
      [l('wal'), c.lag.wal.lagSeconds],
      [l('snapshot'), c.lag.snapshot.lagSeconds],
    ]);
    gauge('ferry_copy_missing_objects', 'Objects of this kind at the source and not yet at the copy.', [
      [l('wal'), c.lag.wal.missing],
      [l('snapshot'), c.lag.snapshot.missing],
    ]);
  }
  return lines.join('\n') + '\n';
}
