/**
 * `ferry audit`: for every asset in ferry.yaml, what protects it: the store's own
 * versioning and replication (read back from the bucket) and Ferry's snapshots
 * (how many, and the age of the newest), or, for a `none` asset, the stated reason.
 */
import type { Asset } from '../config/assets.ts';
import type { SnapshotRef } from '../repo/manifest.ts';
import type { SettingResult } from './bucket.ts';

export type AuditVerdict = 'protected' | 'unprotected' | 'declared-unprotected';

export interface AssetAudit {
  name: string;
  type: Asset['type'];
  verdict: AuditVerdict;
  /** What protects it, one phrase each (empty when nothing does). */
  protectedBy: string[];
  /** Bucket settings read back (s3 assets). */
  native?: SettingResult[];
  snapshots?: { count: number; kinds: string[]; last?: string; ageSeconds?: number };
  reason?: string;
  notes: string[];
}

/** Pure: the audit of one asset from what was found. `snaps` undefined when the repository could not be read. */
export function auditAsset(asset: Asset, snaps: SnapshotRef[] | undefined, native: SettingResult[] | undefined, now: number, repoNote?: string): AssetAudit {
  const out: AssetAudit = { name: asset.name, type: asset.type, verdict: 'unprotected', protectedBy: [], notes: [] };
  if (asset.type === 'none') {
    out.verdict = 'declared-unprotected';
    out.reason = asset.reason;
    return out;
  }
  if (native) {
    out.native = native;
    for (const s of native) {
      if (s.status === 'native' && s.setting !== 'lifecycle') out.protectedBy.push(`native ${s.setting} (${s.detail})`);
      else if (s.status === 'native') out.notes.push(`lifecycle: ${s.detail}`);
      else if (s.status === 'unsupported') out.notes.push(`${s.setting}: unsupported by the store; ${s.standIn}`);
      else if (s.status === 'off') out.notes.push(`${s.setting}: off (${s.detail}); turn it on with \`ferry objects configure ${asset.name}\`, or: ${s.standIn}`);
      else if (s.status === 'failed') out.notes.push(`${s.setting}: could not be read (${s.detail})`);
    }
  }
  if (snaps) {
    const sorted = [...snaps].sort((a, b) => a.manifest.endTime.localeCompare(b.manifest.endTime));
    const last = sorted.at(-1);
    out.snapshots = { count: sorted.length, kinds: [...new Set(sorted.map((s) => s.manifest.kind))].sort() };
    if (last) {
      out.snapshots.last = last.manifest.endTime;
      out.snapshots.ageSeconds = Math.max(0, Math.round((now - Date.parse(last.manifest.endTime)) / 1000));
      out.protectedBy.push(`Ferry snapshots (${sorted.length}, newest ${last.manifest.endTime})`);
    } else out.notes.push('no Ferry snapshot of this asset yet');
  } else if (repoNote) out.notes.push(repoNote);
  if (out.protectedBy.length) out.verdict = 'protected';
  return out;
}
