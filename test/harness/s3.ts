/**
 * A real S3 protocol server for tests: s3rver in a child process on a free
 * 127.0.0.1 port, with its own temp directory and one bucket.
 *
 * It runs as a child because s3rver's continuation tokens use DES, which Node 20
 * (OpenSSL 3) only offers with `--openssl-legacy-provider`; the test process
 * itself keeps default crypto. `startS3Server` sets AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY to s3rver's fixed pair so the SDK's default chain finds
 * them. It throws when the server cannot start: tests fail, never skip.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface S3Server {
  /** e.g. `http://127.0.0.1:41234` */
  endpoint: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 15_000;

/**
 * Runs s3rver's CLI (argv[1]) after fixing two emulator bugs that real S3 does not have:
 * - PUT is acknowledged before the object file is fully written, so a GET right
 *   after it can read a short file. Here the write is finished before the answer.
 * - A Range on an empty object gets `206` with `Content-Length: 1` and no body,
 *   which hangs the client. Real S3 answers 416 InvalidRange, as here.
 * Still unlike S3: overwrites are not atomic (declare atomicReplace: false),
 * If-None-Match is ignored, and suffix ranges (`bytes=-N`) are misread.
 */
const BOOTSTRAP = `
const path = require('path');
const fs = require('fs');
const crypto = require('crypto');
const { Readable, Transform } = require('stream');
const { pipeline } = require('stream/promises');
const Store = require(path.join(path.dirname(process.argv[1]), '..', 'lib', 'stores', 'filesystem.js'));
Store.prototype.putObject = async function (object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  await fs.promises.mkdir(path.dirname(objectPath), { recursive: true });
  const md5 = crypto.createHash('md5');
  let size = 0;
  const source = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
  const measure = new Transform({
    transform(chunk, _enc, done) {
      md5.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  await pipeline(source, measure, fs.createWriteStream(objectPath));
  const digest = md5.digest('hex');
  await this.putMetadata(object.bucket, object.key, object.metadata, digest);
  return { size, md5: digest };
};
// Exit with the test process even if it dies without calling stop(): it holds our stdin.
process.stdin.on('close', () => process.exit(0)).resume();
const getObject = Store.prototype.getObject;
Store.prototype.getObject = async function (bucket, key, options) {
  const object = await getObject.call(this, bucket, key, options);
  if (object && object.range && object.size === 0) {
    if (object.content) object.content.destroy();
    object.content = null;
  }
  return object;
};
require(process.argv[1]);
`;

export async function startS3Server(bucket = 'ferry-test'): Promise<S3Server> {
  const require = createRequire(import.meta.url);
  const bin = join(dirname(require.resolve('s3rver/package.json')), 'bin', 's3rver.js');
  const dir = await mkdtemp(join(tmpdir(), 'ferry-s3rver-'));
  const child = spawn(
    process.execPath,
    ['--openssl-legacy-provider', '-e', BOOTSTRAP, bin, '-d', dir, '-a', '127.0.0.1', '-p', '0', '--silent', '--configure-bucket', bucket],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      let stdout = '';
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      child.stdout.setEncoding('utf8').on('data', (s: string) => {
        stdout += s;
        const m = /listening on [\d.]+:(\d+)/.exec(stdout);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited early (code ${code}, signal ${signal}): ${stderr.trim()}`));
      });
    });
  } catch (e) {
    await stop();
    throw e;
  }
  child.stdout.resume();

  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  process.env.AWS_ACCESS_KEY_ID = credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = credentials.secretAccessKey;
  return { endpoint: `http://127.0.0.1:${port}`, bucket, credentials, stop };
}
