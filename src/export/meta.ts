/**
 * What an export is in the repository: a manifest of kind `export` whose tree holds
 * one file (the pg_dump custom-format archive), with `ExportMeta` as its meta; and
 * finding exports across the hot repository and its cold tier.
 */
import { listSnapshots, type Manifest } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { ConfigError } from '../util/errors.ts';

export const EXPORT_KIND = 'export';
/** The dump's path inside the export's tree. */
export const EXPORT_FILE = 'database.dump';

export type Tier = 'hot' | 'cold';

export interface ExportMeta {
  database: string;
  /** The server's `server_version` and `server_version_num` at export time. */
  serverVersion: string;
  serverVersionNum: number;
  pgDumpVersion: string;
  /** pg_dump's archive format (always `custom`: `-Fc -Z0`). */
  format: 'custom';
  /** Path of the dump in the tree. */
  file: string;
  /** Bytes pg_dump wrote. */
  size: number;
  /** SHA-256 of those bytes: `export get` checks what it hands back against it. */
  sha256: string;
  /** When pg_dump finished (ISO 8601); the export's age is counted from it. */
  time: string;
  /** The tier the manifest was written for: `hot` when taken, `cold` once moved. */
  tier: Tier;
  /** When the export was moved to the cold tier. */
  movedAt?: string;
}

export interface ExportRef {
  id: string;
  manifest: Manifest;
  meta: ExportMeta;
  /** Where this copy of the manifest lives. */
  tier: Tier;
  repo: Repository;
}

export interface Tiers {
  hot: Repository;
  /** The cold tier, when one is configured and exists. */
  cold?: Repository;
}

/** Every export in both tiers, oldest first. An export found in both (an interrupted move) is listed once, as hot. */
export async function listExports(tiers: Tiers): Promise<ExportRef[]> {
  const out = new Map<string, ExportRef>();
  const add = async (repo: Repository | undefined, tier: Tier) => {
    if (!repo) return;
    for (const s of await listSnapshots(repo, { kind: EXPORT_KIND })) {
      if (!out.has(s.id)) out.set(s.id, { id: s.id, manifest: s.manifest, meta: s.manifest.meta as unknown as ExportMeta, tier, repo });
    }
  };
  await add(tiers.hot, 'hot');
  await add(tiers.cold, 'cold');
  return [...out.values()].sort((a, b) => a.meta.time.localeCompare(b.meta.time) || a.id.localeCompare(b.id));
}

/** Resolves `latest`, a full id or a unique prefix (4+ hex digits) among the exports of both tiers. */
export async function resolveExport(tiers: Tiers, ref: string): Promise<ExportRef> {
  const all = await listExports(tiers);
  const where = tiers.hot.location + (tiers.cold ? ` or its cold tier ${tiers.cold.location}` : '');
  if (ref === 'latest') {
    const last = all.at(-1);
    if (!last) throw new ConfigError(`no exports in ${where}`, { hint: 'take one with `ferry pg export`' });
    return last;
  }
  if (!/^[0-9a-f]{4,64}$/.test(ref)) throw new ConfigError(`"${ref}" is not an export id`, { hint: 'give an id (or a prefix of 4+ hex digits) from `ferry pg exports`, or `latest`' });
  const m = all.filter((e) => e.id.startsWith(ref));
  if (m.length === 0) {
    throw new ConfigError(`no export ${ref} in ${where}`, {
      hint: tiers.cold ? '`ferry pg exports` lists them' : '`ferry pg exports` lists them; a moved export needs the cold tier (--cold URL, FERRY_COLD_REPO or repository.cold_url)',
    });
  }
  if (m.length > 1) throw new ConfigError(`export id prefix ${ref} matches ${m.length} exports`, { hint: 'give more digits' });
  return m[0];
}
