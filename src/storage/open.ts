/**
 * openStorage: turns a repository URL into a ready Storage, the one place where
 * backends and wrappers are stacked:
 *
 *   log (when a logger is given)  ->  retry  ->  limit  ->  backend (fs | s3)
 *
 * Retry sits outside the limit so a call backing off does not hold a slot.
 * Accepted URLs: a directory path, `file:///abs/path` (or `file://rel/path`),
 * `s3://bucket[/prefix]`. The S3 endpoint comes from `opts.endpoint`, else
 * FERRY_S3_ENDPOINT; the region from `opts.region`, else AWS_REGION /
 * AWS_DEFAULT_REGION, else us-east-1.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { ConfigError } from '../util/errors.ts';
import { FsStorage } from './fs.ts';
import { LazyStorage } from './lazy.ts';
import { parseS3Url, s3Capabilities, s3Location, type S3StorageOptions } from './s3-options.ts';
import type { Capabilities, Storage } from './types.ts';
import { LimitStorage } from './wrappers/limit.ts';
import { LogStorage } from './wrappers/log.ts';
import { RetryStorage, type RetryOptions } from './wrappers/retry.ts';

export interface OpenStorageOptions {
  /** S3 endpoint URL for S3-compatible servers; overrides FERRY_S3_ENDPOINT. */
  endpoint?: string;
  region?: string;
  /** Declared capabilities of the server and bucket (see S3Storage). */
  capabilities?: Partial<Capabilities>;
  /** Calls in flight at once. Default 16 for S3, 8 for a directory. */
  concurrency?: number;
  retry?: RetryOptions;
  /** When given, every call is logged (debug) and every retry (warn). */
  log?: Logger;
  /** Environment to read; default process.env. */
  env?: NodeJS.ProcessEnv;
}

const ACCEPTED = 'use a directory path, file:///absolute/path, or s3://bucket/prefix';

export function openStorage(url: string, opts: OpenStorageOptions = {}): Storage {
  const backend = openBackend(url, opts);
  const concurrency = opts.concurrency ?? (backend instanceof FsStorage ? 8 : 16);
  const log = opts.log;
  let storage: Storage = new LimitStorage(backend, concurrency);
  storage = new RetryStorage(storage, {
    ...opts.retry,
    onRetry: (info) => {
      opts.retry?.onRetry?.(info);
      log?.warn(
        { storage: backend.location, op: info.op, key: info.key, attempt: info.attempt, delayMs: info.delayMs, reason: info.error.message },
        'storage call failed, retrying',
      );
    },
  });
  if (log) storage = new LogStorage(storage, log);
  return storage;
}

/** The bare backend for a URL, without wrappers. */
export function openBackend(url: string, opts: OpenStorageOptions = {}): FsStorage | LazyStorage {
  const env = opts.env ?? process.env;
  if (url.trim() === '') throw new ConfigError('the repository URL is empty', { hint: ACCEPTED });
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) return new FsStorage(resolve(url));
  if (scheme === 'file' && url.startsWith('file://')) {
    const rest = url.slice('file://'.length);
    if (rest === '') throw new ConfigError(`the repository URL ${url} names no directory`, { hint: ACCEPTED });
    return new FsStorage(rest.startsWith('/') ? fileURLToPath(url) : resolve(rest));
  }
  if (scheme === 's3' && url.startsWith('s3://')) {
    const { bucket, prefix } = parseS3Url(url);
    const endpoint = opts.endpoint ?? (env.FERRY_S3_ENDPOINT || undefined);
    if (endpoint !== undefined) checkEndpoint(endpoint);
    const s3opts: S3StorageOptions = {
      bucket,
      prefix,
      endpoint,
      region: opts.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined),
      capabilities: opts.capabilities,
    };
    // The AWS SDK loads on the first call, not here: `wal push` to a directory never pays for it.
    return new LazyStorage(s3Location(bucket, prefix), s3Capabilities(s3opts), async () => new (await import('./s3.ts')).S3Storage(s3opts));
  }
  throw new ConfigError(`unsupported repository URL ${JSON.stringify(url)}`, {
    hint: `${ACCEPTED} (a relative path containing ":" can be written ./${url})`,
  });
}

function checkEndpoint(endpoint: string): void {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new ConfigError(`invalid S3 endpoint ${JSON.stringify(endpoint)}`, { hint: 'use a URL such as http://127.0.0.1:9000' });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new ConfigError(`invalid S3 endpoint ${JSON.stringify(endpoint)}: not http or https`, { hint: 'use a URL such as https://minio.example:9000' });
  }
}
