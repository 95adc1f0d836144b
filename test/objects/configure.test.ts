/**
 * `ferry objects configure` and `ferry audit`. No S3 server that keeps versions can
 * be had here, so the bucket-settings calls (Put/GetBucketVersioning, -Lifecycle,
 * -Replication) are checked against a small in-process fake of just those endpoints;
 * against the real S3 protocol server (s3rver, which lacks them) they must come out
 * `unsupported` with Ferry's stand-ins named.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ferry, ferryOk } from '../harness/cli.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';
import { startS3Server, type S3Server } from '../harness/s3.ts';

/** Bucket settings as a store that keeps them: each PUT body is stored, each GET returns it. */
function fakeSettingsServer(): { server: Server; calls: string[]; stored: Map<string, string> } {
  const calls: string[] = [];
  const stored = new Map<string, string>();
  const xmlError = (code: string) => `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const what = ['versioning', 'lifecycle', 'replication'].find((q) => url.searchParams.has(q));
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      calls.push(`${req.method} ${url.pathname.replace(/\/+$/, '')}?${what ?? ''}`);
      res.setHeader('content-type', 'application/xml');
      if (!what) {
        res.statusCode = 501;
        return res.end(xmlError('NotImplemented'));
      }
      if (req.method === 'PUT') {
        stored.set(what, body);
        return res.end();
      }
      const got = stored.get(what);
      if (what === 'versioning') return res.end(got ?? '<?xml version="1.0" encoding="UTF-8"?><VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>');
      if (!got) {
        res.statusCode = 404;
        return res.end(xmlError(what === 'lifecycle' ? 'NoSuchLifecycleConfiguration' : 'ReplicationConfigurationNotFoundError'));
      }
      res.end(got);
    });
  });
  return { server, calls, stored };
}

let tmp: TempDir;
let s3: S3Server;
let fake: ReturnType<typeof fakeSettingsServer>;
let env: Record<string, string>;

before(async () => {
  tmp = makeTempDir('ferry-objects-cfg-');
  s3 = await startS3Server('ferry-cfg');
  fake = fakeSettingsServer();
  await new Promise<void>((r) => fake.server.listen(0, '127.0.0.1', r));
  const port = (fake.server.address() as { port: number }).port;
  await mkdir(join(tmp.path, 'dir'));
  await writeFile(join(tmp.path, 'dir', 'a.txt'), 'a');
  await writeFile(
    join(tmp.path, 'ferry.yaml'),
    [
      'assets:',
      `  - { name: versioned, type: s3, bucket: resumes, prefix: uploads/, endpoint: "http://127.0.0.1:${port}", replicate_to: resumes-eu, replication_role: "arn:aws:iam::123456789012:role/replication" }`,
      `  - { name: plain, type: s3, bucket: ${s3.bucket}, prefix: up/, endpoint: "${s3.endpoint}" }`,
      `  - { name: uploads, type: directory, path: "${join(tmp.path, 'dir')}" }`,
      '  - { name: cache, type: none, reason: "Redis: cache only, rebuilt from PostgreSQL" }',
      '',
    ].join('\n'),
  );
  env = { FERRY_REPO: join(tmp.path, 'repo'), FERRY_PASSWORD: 'pw', FERRY_CONFIG: join(tmp.path, 'ferry.yaml'), AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
  await ferryOk(['init'], { env });
});

after(async () => {
  fake?.server.close();
  await s3?.stop();
  tmp?.cleanup();
});

describe('objects configure', () => {
  it('sets versioning, lifecycle and replication where the store keeps them, and reads them back', async () => {
    const r = JSON.parse((await ferryOk(['objects', 'configure', 'versioned', '--json'], { env })).stdout);
    const by = Object.fromEntries(r.settings.map((s: { setting: string }) => [s.setting, s]));
    assert.equal(by.versioning.status, 'native', JSON.stringify(by.versioning));
    assert.equal(by.lifecycle.status, 'native', JSON.stringify(by.lifecycle));
    assert.match(by.lifecycle.detail, /after 90 days/);
    assert.equal(by.replication.status, 'native', JSON.stringify(by.replication));
    assert.match(by.replication.detail, /arn:aws:s3:::resumes-eu/);
    assert.match(fake.stored.get('versioning')!, /<Status>Enabled<\/Status>/);
    assert.match(fake.stored.get('lifecycle')!, /<NoncurrentDays>90<\/NoncurrentDays>/);
    assert.match(fake.stored.get('replication')!, /<Role>arn:aws:iam::123456789012:role\/replication<\/Role>/);
    for (const call of ['PUT /resumes?versioning', 'PUT /resumes?lifecycle', 'PUT /resumes?replication', 'GET /resumes?versioning', 'GET /resumes?lifecycle', 'GET /resumes?replication']) {
      assert.ok(fake.calls.includes(call), `${call} in ${fake.calls.join(', ')}`);
    }
  });

  it('keeps the bucket\'s other lifecycle rules', async () => {
    fake.stored.set(
      'lifecycle',
      '<LifecycleConfiguration><Rule><ID>theirs</ID><Status>Enabled</Status><Filter><Prefix>tmp/</Prefix></Filter><Expiration><Days>7</Days></Expiration></Rule></LifecycleConfiguration>',
    );
    await ferryOk(['objects', 'configure', 'versioned'], { env });
    assert.match(fake.stored.get('lifecycle')!, /<ID>theirs<\/ID>/);
    assert.match(fake.stored.get('lifecycle')!, /<ID>ferry-noncurrent-expiry<\/ID>/);
  });

  it('on a store without them (s3rver), says unsupported and names what stands in', async () => {
    const r = await ferryOk(['objects', 'configure', 'plain', '--json'], { env });
    const settings = JSON.parse(r.stdout).settings as { setting: string; status: string; standIn?: string }[];
    for (const s of settings) {
      assert.equal(s.status, 'unsupported', JSON.stringify(s));
      assert.ok(s.standIn, `${s.setting} names a stand-in`);
    }
    assert.match(settings.find((s) => s.setting === 'versioning')!.standIn!, /ferry objects snapshot/);
    assert.match(settings.find((s) => s.setting === 'replication')!.standIn!, /ferry repo copy/);
    const human = await ferryOk(['objects', 'configure', 'plain'], { env });
    assert.match(human.stdout, /versioning\s+unsupported/);
  });

  it('refuses a directory asset with a clear error', async () => {
    const r = await ferry(['objects', 'configure', 'uploads'], { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /is a directory/);
  });
});

describe('audit', () => {
  it('says what protects each asset, and fails while one is unprotected', async () => {
    const r1 = await ferry(['audit', '--json'], { env });
    assert.equal(r1.code, 1, 'the directory and plain bucket have no snapshot yet');
    const a1 = Object.fromEntries(JSON.parse(r1.stdout).map((a: { name: string }) => [a.name, a]));
    assert.equal(a1.versioned.verdict, 'protected');
    assert.ok(a1.versioned.protectedBy.some((p: string) => /native versioning/.test(p)));
    assert.ok(a1.versioned.protectedBy.some((p: string) => /native replication/.test(p)));
    assert.equal(a1.plain.verdict, 'unprotected');
    assert.ok(a1.plain.notes.some((n: string) => /versioning: (off|unsupported)/.test(n)));
    assert.equal(a1.uploads.verdict, 'unprotected');
    assert.equal(a1.cache.verdict, 'declared-unprotected');
    assert.match(a1.cache.reason, /cache only/);

    await ferryOk(['objects', 'snapshot', 'uploads'], { env });
    await ferryOk(['objects', 'snapshot', 'plain'], { env });
    const r2 = await ferryOk(['audit', '--json'], { env });
    const a2 = Object.fromEntries(JSON.parse(r2.stdout).map((a: { name: string }) => [a.name, a]));
    assert.equal(a2.uploads.verdict, 'protected');
    assert.equal(a2.plain.verdict, 'protected');
    assert.equal(a2.plain.snapshots.count, 1);
    assert.ok(a2.plain.snapshots.ageSeconds >= 0);
    assert.ok(a2.plain.protectedBy.every((p: string) => !/native/.test(p)), 'only Ferry protects the plain bucket');
    const human = await ferryOk(['audit'], { env });
    assert.match(human.stdout, /cache\s+none\s+declared-unprotected\s+nothing: Redis/);
  });
});
