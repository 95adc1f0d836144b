/**
 * S3Storage: the `Storage` backend over an S3-compatible bucket (AWS S3, MinIO,
 * Ceph RGW, R2, s3rver), with AWS SDK v3.
 *
 * Key `k` is object `<prefix>/k` in the bucket. `put` is one PutObject (atomic by
 * S3's semantics); `putStream` is a multipart upload, which S3 publishes only on
 * completion. Capabilities depend on the server, so callers declare them:
 * by default conditional writes are assumed only on AWS itself (no custom
 * endpoint); versioning and object lock are bucket settings and default to off.
 * Errors are mapped to NotFoundError, AlreadyExistsError or StorageError, with
 * `transient` set for throttling, 5xx and network failures.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { AlreadyExistsError, FerryError, NotFoundError, StorageError } from '../util/errors.ts';
import { checkKey, checkPrefix } from './keys.ts';
import { checkRange, isRanged, resolveRange } from './range.ts';
import { s3Capabilities, type S3StorageOptions } from './s3-options.ts';
import type { Capabilities, GetOptions, ListPage, ObjectInfo, PutOptions, Storage } from './types.ts';

const MiB = 1024 * 1024;
/** S3 returns at most 1000 keys per ListObjectsV2 call. */
const MAX_PAGE_SIZE = 1000;

export { parseS3Url, type S3StorageOptions } from './s3-options.ts';

export class S3Storage implements Storage {
  readonly location: string;
  readonly capabilities: Capabilities;
  private readonly client: S3Client;
  private readonly bucket: string;
  /** Prepended to every key: '' or `prefix/`. */
  private readonly root: string;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(opts: S3StorageOptions) {
    const prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.bucket = opts.bucket;
    this.root = prefix === '' ? '' : prefix + '/';
    this.location = `s3://${opts.bucket}${prefix === '' ? '' : '/' + prefix}`;
    this.capabilities = s3Capabilities(opts);
    this.partSize = opts.partSize ?? 16 * MiB;
    this.queueSize = opts.queueSize ?? 2;
    const maxSockets = opts.maxSockets ?? 16;
    // Ferry supports Node 20: keep the SDK's "upgrade to Node 22" notice out of
    // every `wal push` (and so out of PostgreSQL's log). Setting it to 'false' opts back in.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client = new S3Client({
      region: opts.region ?? 'us-east-1',
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle ?? opts.endpoint !== undefined,
      credentials: opts.credentials,
      maxAttempts: opts.maxAttempts ?? 3,
      // Only send and check checksums where the API requires them: S3-compatible
      // servers (s3rver, older MinIO/Ceph) reject or mangle the newer flexible checksums.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: 10_000,
        socketTimeout: 120_000,
        httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
        httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
      },
    });
  }

  async put(key: string, data: Buffer, opts?: PutOptions): Promise<void> {
    const Key = this.objectKey(key);
    const ifNoneMatch = await this.prepareIfNoneMatch(key, opts);
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key, Body: data, ContentLength: data.length, IfNoneMatch: ifNoneMatch }),
      );
    } catch (e) {
      throw this.mapError(e, 'write', key);
    }
  }

  async putStream(key: string, body: Readable, opts?: PutOptions): Promise<void> {
    const Key = this.objectKey(key);
    const ifNoneMatch = await this.prepareIfNoneMatch(key, opts);
    // An error of the caller's stream is the caller's, not the storage's: rethrow it as is.
    let bodyError: unknown;
    const onBodyError = (e: unknown): void => {
      bodyError ??= e;
    };
    body.once('error', onBodyError);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key, Body: body, IfNoneMatch: ifNoneMatch },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (e) {
      if (bodyError !== undefined) throw bodyError;
      throw this.mapError(e, 'write', key);
    } finally {
      body.off('error', onBodyError);
    }
  }

  async get(key: string, opts?: GetOptions): Promise<Buffer> {
    const Key = this.objectKey(key);
    checkRange(opts);
    if (opts?.length === 0) {
      if ((await this.stat(key)) === undefined) throw this.notFound(key);
      return Buffer.alloc(0);
    }
    if (!isRanged(opts)) return this.fetch(key, Key, undefined);
    const offset = opts?.offset ?? 0;
    const header =
      offset < 0
        ? `bytes=-${-offset}`
        : opts?.length === undefined
          ? `bytes=${offset}-`
          : `bytes=${offset}-${offset + opts.length - 1}`;
    const got = await this.fetchRange(key, Key, header);
    if (got === undefined) return Buffer.alloc(0); // range starts past the end
    const want = resolveRange(got.total, opts);
    if (got.start <= want.start && got.start + got.data.length >= want.end) {
      return got.data.subarray(want.start - got.start, want.end - got.start);
    }
    // The server answered a different range than asked (some emulators ignore suffix
    // ranges); ask again with the absolute range, now that the size is known.
    if (want.end === want.start) return Buffer.alloc(0);
    const again = await this.fetchRange(key, Key, `bytes=${want.start}-${want.end - 1}`);
    if (again === undefined || again.start !== want.start || again.data.length < want.end - want.start) {
      throw new StorageError(`cannot read ${this.where(key)}: the server returned the wrong byte range`);
    }
    return again.data.subarray(0, want.end - want.start);
  }

  async getStream(key: string): Promise<Readable> {
    const Key = this.objectKey(key);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      return out.Body as Readable;
    } catch (e) {
      throw this.mapError(e, 'read', key);
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const Key = this.objectKey(key);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return { key, size: out.ContentLength ?? 0, mtime: out.LastModified?.getTime() ?? 0 };
    } catch (e) {
      const mapped = this.mapError(e, 'stat', key);
      if (mapped instanceof NotFoundError) return undefined;
      throw mapped;
    }
  }

  async listPage(prefix: string, cursor?: string, pageSize: number = MAX_PAGE_SIZE): Promise<ListPage> {
    checkPrefix(prefix);
    if (!Number.isSafeInteger(pageSize) || pageSize < 1) {
      throw new StorageError(`invalid list page size ${pageSize}: must be a positive integer`);
    }
    let out;
    try {
      out = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.root + prefix,
          ContinuationToken: cursor,
          MaxKeys: Math.min(pageSize, MAX_PAGE_SIZE),
        }),
      );
    } catch (e) {
      throw this.mapError(e, 'list', prefix);
    }
    const objects: ObjectInfo[] = [];
    for (const c of out.Contents ?? []) {
      if (c.Key === undefined || !c.Key.startsWith(this.root)) continue;
      const key = c.Key.slice(this.root.length);
      // Skip objects no Ferry key can name, such as `dir/` markers made by consoles.
      if (key === '' || key.endsWith('/') || key.includes('//')) continue;
      objects.push({ key, size: c.Size ?? 0, mtime: c.LastModified?.getTime() ?? 0 });
    }
    if (out.IsTruncated && !out.NextContinuationToken) {
      throw new StorageError(`cannot list ${this.where(prefix)}: truncated listing without a continuation token`);
    }
    return { objects, cursor: out.IsTruncated ? out.NextContinuationToken : undefined };
  }

  async delete(key: string): Promise<void> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (e) {
      const mapped = this.mapError(e, 'delete', key);
      if (mapped instanceof NotFoundError) return;
      throw mapped;
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private objectKey(key: string): string {
    checkKey(key);
    return this.root + key;
  }

  private where(key: string): string {
    return `s3://${this.bucket}/${this.root}${key}`;
  }

  private notFound(key: string, cause?: unknown): NotFoundError {
    return new NotFoundError(`no object ${key} in ${this.location}`, cause === undefined ? {} : { cause });
  }

  /**
   * The IfNoneMatch header to send. Without server-side conditional writes the
   * check is a stat first: racy, as the Storage contract allows.
   */
  private async prepareIfNoneMatch(key: string, opts: PutOptions | undefined): Promise<string | undefined> {
    if (!opts?.ifNoneMatch) return undefined;
    if (this.capabilities.conditionalPut) return '*';
    if ((await this.stat(key)) !== undefined) {
      throw new AlreadyExistsError(`object ${key} already exists in ${this.location}`);
    }
    return undefined;
  }

  private async fetch(key: string, Key: string, Range: string | undefined): Promise<Buffer> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range }));
      return await readBody(out.Body);
    } catch (e) {
      throw this.mapError(e, 'read', key);
    }
  }

  /**
   * GET with a Range header. Returns the bytes with the position and object size
   * the server reports, or undefined when the range is unsatisfiable (416).
   */
  private async fetchRange(key: string, Key: string, Range: string): Promise<{ data: Buffer; start: number; total: number } | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range }));
      const data = await readBody(out.Body);
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(out.ContentRange ?? '');
      // No Content-Range: the server ignored the Range header and sent the whole object.
      if (!m) return { data, start: 0, total: data.length };
      return { data, start: Number(m[1]), total: Number(m[3]) };
    } catch (e) {
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 416 || (e as Error).name === 'InvalidRange') return undefined;
      throw this.mapError(e, 'read', key);
    }
  }

  private mapError(e: unknown, verb: string, key: string): Error {
    return s3Error(e, verb, this.where(key), () => this.notFound(key, e), this.bucket);
  }
}

async function readBody(body: unknown): Promise<Buffer> {
  if (body === undefined) return Buffer.alloc(0);
  const bytes = await (body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const THROTTLING = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'ConditionalRequestConflict',
  'TimeoutError',
]);
const NETWORK = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
const DENIED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden']);

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

/** Maps an SDK or network error to a Ferry storage error naming `where`. */
function s3Error(e: unknown, verb: string, where: string, notFound: () => NotFoundError, bucket: string): Error {
  if (e instanceof FerryError) return e;
  const err = (e ?? {}) as SdkError;
  const status = err.$metadata?.httpStatusCode;
  const name = err.name ?? '';
  const what = `cannot ${verb} ${where}`;
  const message = err.message || name || String(e);
  const cause = { cause: e };
  if (name === 'NoSuchBucket') {
    return new StorageError(`${what}: bucket ${bucket} does not exist`, { ...cause, hint: 'create the bucket or fix the repository URL' });
  }
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) return notFound();
  if (name === 'PreconditionFailed' || status === 412) {
    return new AlreadyExistsError(`${what}: the object already exists`, cause);
  }
  if (DENIED.has(name) || status === 403) {
    return new StorageError(`${what}: access denied (${message})`, {
      ...cause,
      hint: 'check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the bucket policy',
    });
  }
  if (name === 'CredentialsProviderError') {
    return new StorageError(`${what}: no S3 credentials found`, {
      ...cause,
      hint: 'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE',
    });
  }
  const transient =
    (status !== undefined && (status >= 500 || status === 429 || status === 408)) ||
    THROTTLING.has(name) ||
    NETWORK.has(err.code ?? '') ||
    NETWORK.has(name) ||
    Boolean(err.$retryable);
  return new StorageError(`${what}: ${message}`, { ...cause, transient });
}
