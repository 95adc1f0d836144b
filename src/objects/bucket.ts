/**
 * Bucket settings the runbook asks for on an `s3` asset: versioning, a lifecycle
 * rule expiring noncurrent versions, and replication to a second bucket. Each is
 * set, then read back; a store that lacks one (NotImplemented, 501, or one that
 * accepts the call but does not keep the setting) is reported `unsupported`, and
 * Ferry's own snapshots (and `ferry repo copy`) stand in for it.
 *
 * Lifecycle and replication configurations are whole documents on S3: Ferry's
 * rule (by its id) is replaced, the bucket's other rules are kept.
 */
import {
  GetBucketLifecycleConfigurationCommand,
  GetBucketReplicationCommand,
  GetBucketVersioningCommand,
  PutBucketLifecycleConfigurationCommand,
  PutBucketReplicationCommand,
  PutBucketVersioningCommand,
  type LifecycleRule,
  type ReplicationRule,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { S3Asset } from '../config/assets.ts';
import { assetClient, httpStatus } from './s3source.ts';

export const LIFECYCLE_RULE_ID = 'ferry-noncurrent-expiry';
export const REPLICATION_RULE_ID = 'ferry-replication';
export const NONCURRENT_DAYS = 90;

export type SettingName = 'versioning' | 'lifecycle' | 'replication';
export type SettingStatus = 'native' | 'unsupported' | 'failed' | 'off';

export interface SettingResult {
  setting: SettingName;
  status: SettingStatus;
  /** What was read back, or why not. */
  detail: string;
  /** What protects the asset instead, when the store cannot. */
  standIn?: string;
}

export const STAND_IN: Record<SettingName, string> = {
  versioning: 'Ferry snapshots (`ferry objects snapshot NAME --watch`) keep every version seen',
  lifecycle: 'Ferry retention (`ferry expire`) decides how long snapshots are kept',
  replication: 'copy the Ferry repository to a second region with `ferry repo copy --to URL --watch`',
};

function unsupportedError(e: unknown): boolean {
  const name = (e as Error)?.name ?? '';
  const status = httpStatus(e);
  return name === 'NotImplemented' || status === 501 || status === 405 || name === 'MethodNotAllowed';
}

/**
 * A refused PUT of a setting means the store lacks it unless the refusal is about
 * the caller (credentials, permissions, a missing bucket) or the network: s3rver,
 * for one, takes `PUT ?versioning` for CreateBucket and answers 409.
 */
function refusedAsUnsupported(e: unknown): boolean {
  if (unsupportedError(e)) return true;
  const status = httpStatus(e) ?? 0;
  const name = (e as Error)?.name ?? '';
  return status >= 400 && status < 500 && status !== 401 && status !== 403 && !['AccessDenied', 'NoSuchBucket', 'InvalidAccessKeyId', 'SignatureDoesNotMatch'].includes(name);
}

function notConfigured(e: unknown): boolean {
  const name = (e as Error)?.name ?? '';
  return name === 'NoSuchLifecycleConfiguration' || name === 'ReplicationConfigurationNotFoundError' || name === 'NoSuchReplicationConfiguration';
}

function describeError(e: unknown): string {
  const status = httpStatus(e);
  return `${(e as Error)?.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${(e as Error)?.message ?? String(e)}`;
}

function destinationArn(to: string): string {
  return to.startsWith('arn:') ? to : `arn:aws:s3:::${to}`;
}

/** Reads the three settings back (used by configure and by `ferry audit`). */
export async function readBucketSettings(asset: S3Asset, given?: S3Client): Promise<SettingResult[]> {
  const client = given ?? assetClient(asset);
  try {
    return await readWith(asset, client);
  } finally {
    if (!given) client.destroy();
  }
}

async function readWith(asset: S3Asset, client: S3Client): Promise<SettingResult[]> {
  const out: SettingResult[] = [];
  const Bucket = asset.bucket;
  try {
    const v = await client.send(new GetBucketVersioningCommand({ Bucket }));
    out.push(v.Status === 'Enabled' ? { setting: 'versioning', status: 'native', detail: 'versioning Enabled' } : { setting: 'versioning', status: 'off', detail: `versioning ${v.Status ?? 'never enabled'}` });
  } catch (e) {
    out.push({ setting: 'versioning', status: unsupportedError(e) ? 'unsupported' : 'failed', detail: describeError(e) });
  }
  try {
    const l = await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket }));
    const rule = (l.Rules ?? []).find((r) => r.ID === LIFECYCLE_RULE_ID && r.Status === 'Enabled');
    const days = rule?.NoncurrentVersionExpiration?.NoncurrentDays;
    out.push(rule ? { setting: 'lifecycle', status: 'native', detail: `noncurrent versions expire after ${days} days` } : { setting: 'lifecycle', status: 'off', detail: `${(l.Rules ?? []).length} rules, none of Ferry's` });
  } catch (e) {
    out.push(notConfigured(e) ? { setting: 'lifecycle', status: 'off', detail: 'no lifecycle configuration' } : { setting: 'lifecycle', status: unsupportedError(e) ? 'unsupported' : 'failed', detail: describeError(e) });
  }
  try {
    const r = await client.send(new GetBucketReplicationCommand({ Bucket }));
    const rules = (r.ReplicationConfiguration?.Rules ?? []).filter((x) => x.Status === 'Enabled');
    out.push(rules.length ? { setting: 'replication', status: 'native', detail: `to ${rules.map((x) => x.Destination?.Bucket).join(', ')}` } : { setting: 'replication', status: 'off', detail: 'no enabled replication rule' });
  } catch (e) {
    out.push(notConfigured(e) ? { setting: 'replication', status: 'off', detail: 'no replication configuration' } : { setting: 'replication', status: unsupportedError(e) ? 'unsupported' : 'failed', detail: describeError(e) });
  }
  for (const s of out) if (s.status !== 'native') s.standIn = STAND_IN[s.setting];
  return out;
}

/**
 * Turns on versioning and the lifecycle rule, and replication when the asset names
 * `replicate_to`, then reads everything back. Never throws for a store's refusal:
 * each setting's outcome is in the result.
 */
export async function configureBucket(asset: S3Asset): Promise<SettingResult[]> {
  const client = assetClient(asset);
  const Bucket = asset.bucket;
  const putErrors = new Map<SettingName, unknown>();
  try {
    try {
      await client.send(new PutBucketVersioningCommand({ Bucket, VersioningConfiguration: { Status: 'Enabled' } }));
    } catch (e) {
      putErrors.set('versioning', e);
    }
    try {
      let rules: LifecycleRule[] = [];
      try {
        rules = (await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket }))).Rules ?? [];
      } catch (e) {
        if (!notConfigured(e)) throw e;
      }
      const ours: LifecycleRule = {
        ID: LIFECYCLE_RULE_ID,
        Status: 'Enabled',
        Filter: { Prefix: asset.prefix },
        NoncurrentVersionExpiration: { NoncurrentDays: asset.noncurrent_days ?? NONCURRENT_DAYS },
      };
      await client.send(new PutBucketLifecycleConfigurationCommand({ Bucket, LifecycleConfiguration: { Rules: [...rules.filter((r) => r.ID !== LIFECYCLE_RULE_ID), ours] } }));
    } catch (e) {
      putErrors.set('lifecycle', e);
    }
    if (asset.replicate_to) {
      try {
        let rules: ReplicationRule[] = [];
        let role = asset.replication_role;
        try {
          const cur = (await client.send(new GetBucketReplicationCommand({ Bucket }))).ReplicationConfiguration;
          rules = cur?.Rules ?? [];
          role ??= cur?.Role;
        } catch (e) {
          if (!notConfigured(e)) throw e;
        }
        const ours: ReplicationRule = {
          ID: REPLICATION_RULE_ID,
          Priority: 1,
          Status: 'Enabled',
          Filter: { Prefix: asset.prefix },
          DeleteMarkerReplication: { Status: 'Enabled' },
          Destination: { Bucket: destinationArn(asset.replicate_to) },
        };
        await client.send(new PutBucketReplicationCommand({ Bucket, ReplicationConfiguration: { Role: role ?? '', Rules: [...rules.filter((r) => r.ID !== REPLICATION_RULE_ID), ours] } }));
      } catch (e) {
        putErrors.set('replication', e);
      }
    }
    const read = await readBucketSettings(asset, client);
    for (const r of read) {
      const err = putErrors.get(r.setting);
      if (r.setting === 'replication' && !asset.replicate_to && r.status !== 'native') {
        r.detail = `${r.detail}; not requested (set replicate_to on the asset)`;
        continue;
      }
      if (err && r.status !== 'native') {
        r.status = refusedAsUnsupported(err) || r.status === 'unsupported' ? 'unsupported' : 'failed';
        r.detail = `${r.status === 'unsupported' ? 'the store refused it' : 'setting it failed'}: ${describeError(err)}`;
      } else if (!err && r.status === 'off') {
        // Accepted but not kept: the store ignores the setting.
        r.status = 'unsupported';
        r.detail = `the store accepted the setting but reads back: ${r.detail}`;
      }
    }
    return read;
  } finally {
    client.destroy();
  }
}
