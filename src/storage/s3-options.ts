/**
 * S3 options, URL parsing and declared capabilities, kept apart from the AWS SDK
 * so that opening a repository does not load the SDK until the first S3 call
 * (start-up time matters: `wal push` runs once per WAL segment).
 */
import { ConfigError } from '../util/errors.ts';
import { checkPrefix } from './keys.ts';
import type { Capabilities } from './types.ts';

export interface S3StorageOptions {
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing slash ('' for none). */
  prefix?: string;
  /** Custom endpoint URL (MinIO, s3rver...). Implies path-style addressing unless forcePathStyle is false. */
  endpoint?: string;
  /** Default `us-east-1`. */
  region?: string;
  forcePathStyle?: boolean;
  /** Explicit credentials; default is the SDK's provider chain (env, profile, IMDS...). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** What this server and bucket support; see the module comment for defaults. */
  capabilities?: Partial<Capabilities>;
  /** Sockets kept alive to the server. Default 16. */
  maxSockets?: number;
  /** Attempts per HTTP request inside the SDK (parts of a multipart upload included). Default 3. */
  maxAttempts?: number;
  /** Multipart part size for putStream. Default 16 MiB. */
  partSize?: number;
  /** Parts uploaded in parallel per putStream. Default 2. */
  queueSize?: number;
}

/** Parses `s3://bucket/prefix` into bucket and prefix (without slashes at either end). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/?#]+)(?:\/([^?#]*))?$/.exec(url);
  if (!m) {
    throw new ConfigError(`invalid S3 repository URL ${JSON.stringify(url)}`, { hint: 'use s3://bucket or s3://bucket/prefix' });
  }
  const bucket = m[1];
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ConfigError(`invalid S3 bucket name ${JSON.stringify(bucket)} in ${url}`, {
      hint: 'bucket names are 3-63 characters of lowercase letters, digits, dots and hyphens',
    });
  }
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  try {
    if (prefix !== '') checkPrefix(prefix + '/');
  } catch (e) {
    throw new ConfigError(`invalid prefix in S3 repository URL ${url}: ${(e as Error).message}`, { hint: 'use s3://bucket/path/to/repo' });
  }
  return { bucket, prefix };
}

/** Defaults: conditional writes only on AWS itself (no custom endpoint); no versioning or object lock unless declared. */
export function s3Capabilities(opts: Pick<S3StorageOptions, 'endpoint' | 'capabilities'>): Capabilities {
  return {
    atomicReplace: true,
    conditionalPut: opts.endpoint === undefined,
    versioning: false,
    objectLock: false,
    remote: true,
    ...opts.capabilities,
  };
}

export function s3Location(bucket: string, prefix: string): string {
  return `s3://${bucket}${prefix === '' ? '' : '/' + prefix}`;
}
