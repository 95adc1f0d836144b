/**
 * The S3 side of object sources, and the S3 client for an asset (loaded on first
 * use: it pulls in the AWS SDK). Credentials come from the SDK's usual chain
 * (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile, instance role); the endpoint
 * and region from the asset.
 */
import { Agent as HttpAgent } from 'node:http';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { S3Asset } from '../config/assets.ts';
import { FerryError, NotFoundError, StorageError } from '../util/errors.ts';
import type { ObjectEntry, ObjectSource } from './source.ts';

export function assetClient(asset: S3Asset): S3Client {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new S3Client({
    region: asset.region ?? 'us-east-1',
    endpoint: asset.endpoint,
    forcePathStyle: asset.endpoint !== undefined,
    maxAttempts: 3,
    // As in storage/s3.ts: S3-compatible servers reject or mangle the newer flexible checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: 10_000, socketTimeout: 120_000, httpAgent: new HttpAgent({ keepAlive: true, maxSockets: 16 }) },
  });
}

/** The HTTP status of an SDK error, if any. */
export function httpStatus(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function stripEtag(e: string | undefined): string | undefined {
  return e?.replace(/^"|"$/g, '');
}

function nativeVersion(v: string | undefined): string | undefined {
  return v && v !== 'null' ? v : undefined;
}

export class S3Source implements ObjectSource {
  readonly location: string;
  private readonly client: S3Client;
  constructor(private readonly asset: S3Asset) {
    this.location = `s3://${asset.bucket}/${asset.prefix}`;
    this.client = assetClient(asset);
  }

  private fail(what: string, e: unknown): never {
    if (e instanceof FerryError) throw e;
    const status = httpStatus(e);
    throw new StorageError(`${what} on ${this.location}${this.asset.endpoint ? ` (${this.asset.endpoint})` : ''} failed: ${(e as Error).name}${status ? ` (HTTP ${status})` : ''}: ${(e as Error).message}`, {
      hint: 'check the asset in ferry.yaml and the AWS credentials in the environment',
    });
  }

  async list(): Promise<ObjectEntry[]> {
    const out: ObjectEntry[] = [];
    let token: string | undefined;
    try {
      do {
        const r = await this.client.send(new ListObjectsV2Command({ Bucket: this.asset.bucket, Prefix: this.asset.prefix || undefined, ContinuationToken: token, MaxKeys: 1000 }));
        for (const o of r.Contents ?? []) {
          if (!o.Key || o.Key.endsWith('/')) continue; // "folder" placeholders
          out.push({ key: o.Key, size: o.Size ?? 0, mtimeMs: o.LastModified?.getTime() ?? 0, ...(o.ETag ? { etag: stripEtag(o.ETag) } : {}) });
        }
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
    } catch (e) {
      this.fail('listing', e);
    }
    out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return out;
  }

  async stat(key: string): Promise<ObjectEntry | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.asset.bucket, Key: key }));
      const v = nativeVersion(r.VersionId);
      return { key, size: r.ContentLength ?? 0, mtimeMs: r.LastModified?.getTime() ?? 0, ...(r.ETag ? { etag: stripEtag(r.ETag) } : {}), ...(v ? { versionId: v } : {}) };
    } catch (e) {
      if (httpStatus(e) === 404 || e instanceof NotFoundError) return undefined;
      this.fail(`HEAD ${key}`, e);
    }
  }

  async read(key: string): Promise<{ data: Buffer; entry: ObjectEntry } | undefined> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.asset.bucket, Key: key }));
      const data = Buffer.from(await r.Body!.transformToByteArray());
      const v = nativeVersion(r.VersionId);
      return { data, entry: { key, size: data.length, mtimeMs: r.LastModified?.getTime() ?? 0, ...(r.ETag ? { etag: stripEtag(r.ETag) } : {}), ...(v ? { versionId: v } : {}) } };
    } catch (e) {
      if (httpStatus(e) === 404 || (e as Error).name === 'NoSuchKey') return undefined;
      this.fail(`GET ${key}`, e);
    }
  }

  async write(key: string, data: Buffer): Promise<void> {
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.asset.bucket, Key: key, Body: data }));
    } catch (e) {
      this.fail(`PUT ${key}`, e);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
