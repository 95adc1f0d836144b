/**
 * `ferry secrets …` run as a child process, on real files, a real directory and a
 * real command: a version per change and none when unchanged, each version restored
 * byte-identical (mode 0600), values never in the output of snapshot / versions /
 * restore without --reveal, nor anywhere in the repository's files, and 90-day
 * retention with the clock moved (FERRY_NOW) that always keeps the newest version.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ferry, ferryOk, type FerryResult } from '../harness/cli.ts';
import { makeTempDir, type TempDir } from '../harness/tmp.ts';
import { DAY_MS } from '../../src/util/clock.ts';

let tmp: TempDir;
let env: Record<string, string>;
/** Every secret value written during the tests: none may show up where it must not. */
const secrets: string[] = [];
/** Outputs of commands that must not reveal a value. */
const quietOutputs: FerryResult[] = [];

const base = Date.UTC(2026, 0, 1);
const at = (day: number) => ({ FERRY_NOW: new Date(base + day * DAY_MS).toISOString() });

function newSecret(label: string): string {
  const s = `${label}-${randomBytes(12).toString('hex')}`;
  secrets.push(s);
  return s;
}

async function run(args: string[], extra: Record<string, string> = {}): Promise<FerryResult> {
  const r = await ferryOk(args, { env: { ...env, ...extra }, cwd: tmp.path });
  quietOutputs.push(r);
  return r;
}

function json<T>(r: FerryResult): T {
  return JSON.parse(r.stdout) as T;
}

interface Version {
  id: string;
  time: string;
  size: number;
  fingerprint: string;
}

async function versions(name: string): Promise<Version[]> {
  return json<{ versions: Version[] }>(await run(['secrets', 'versions', name, '--json'])).versions;
}

async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await allFiles(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

before(async () => {
  tmp = makeTempDir('ferry-secrets-');
  const repo = join(tmp.path, 'repo');
  env = { FERRY_REPO: repo, FERRY_KEY_FILE: join(tmp.path, 'key'), FERRY_CONFIG: join(tmp.path, 'ferry.yaml') };
  await writeFile(
    join(tmp.path, 'ferry.yaml'),
    [
      'assets:',
      '  - { name: app-env, type: secrets, file: app.env }',
      '  - { name: tls, type: secrets, dir: tls }',
      '  - { name: vault, type: secrets, command: "cat ./vault-out.txt" }',
      '  - { name: vault-broken, type: secrets, command: "cat ./vault-out.txt; echo oops >&2; exit 4" }',
      '  - { name: vault-slow, type: secrets, command: "cat ./vault-out.txt; sleep 30" }',
      '  - { name: short, type: secrets, file: short.env, keep_days: 7 }',
      '  - { name: probe, type: secrets, command: "env | grep -c ^FERRY_KEY_FILE= || true" }',
      '',
    ].join('\n'),
  );
  await ferryOk(['init', '--key-file', env.FERRY_KEY_FILE], { env, cwd: tmp.path });
});

after(() => tmp?.cleanup());

describe('secrets from an env file', () => {
  const contents: Buffer[] = [];

  it('stores one version per rotation (5 rotations, 10 days apart) and none when unchanged', async () => {
    for (let i = 0; i < 5; i++) {
      const c = Buffer.from(`# app env, rotation ${i + 1}\nDATABASE_URL=postgres://app:${newSecret('pw')}@db/app\nAPI_KEY=${newSecret('key')}\n`);
      contents.push(c);
      await writeFile(join(tmp.path, 'app.env'), c, { mode: 0o640 });
      const first = json<{ stored: boolean; version: Version }>(await run(['secrets', 'snapshot', 'app-env', '--json'], at(i * 10)));
      assert.equal(first.stored, true);
      assert.equal(first.version.size, c.length);
      // Unchanged content (even with a new mtime): nothing stored.
      await writeFile(join(tmp.path, 'app.env'), c);
      const again = json<{ stored: boolean; version: Version }>(await run(['secrets', 'snapshot', 'app-env', '--json'], at(i * 10 + 1)));
      assert.equal(again.stored, false);
      assert.equal(again.version.id, first.version.id);
      const human = await run(['secrets', 'snapshot', 'app-env'], at(i * 10 + 2));
      assert.match(human.stdout, /unchanged since version/);
    }
    const vs = await versions('app-env');
    assert.equal(vs.length, 5);
    assert.equal(new Set(vs.map((v) => v.fingerprint)).size, 5);
    const table = await run(['secrets', 'versions', 'app-env']);
    assert.match(table.stdout, /VERSION\s+TIME\s+SOURCE/);
  });

  it('restores every version byte-identical with mode 0600, the third among them', async () => {
    const vs = await versions('app-env');
    for (const [i, v] of vs.entries()) {
      const to = join(tmp.path, `restored-${i}.env`);
      await run(['secrets', 'restore', 'app-env', '--version', v.id.slice(0, 10), '--to', to]);
      assert.deepEqual(await readFile(to), contents[i], `version ${i + 1}`);
      assert.equal((await stat(to)).mode & 0o777, 0o600);
    }
  });

  it('prints a value only with --reveal, and never overwrites without --force', async () => {
    const vs = await versions('app-env');
    const third = vs[2].id;
    const refused = await ferry(['secrets', 'restore', 'app-env', '--version', third], { env, cwd: tmp.path });
    quietOutputs.push(refused);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--reveal/);
    const shown = await ferryOk(['secrets', 'restore', 'app-env', '--version', third, '--reveal'], { env, cwd: tmp.path });
    assert.equal(shown.stdout, contents[2].toString());

    const to = join(tmp.path, 'restored-0.env');
    const busy = await ferry(['secrets', 'restore', 'app-env', '--version', third, '--to', to], { env, cwd: tmp.path });
    quietOutputs.push(busy);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /already exists.*--force/s);
    assert.deepEqual(await readFile(to), contents[0]);
    await run(['secrets', 'restore', 'app-env', '--version', third, '--to', to, '--force']);
    assert.deepEqual(await readFile(to), contents[2]);
  });

  it('expires versions older than 90 days and always keeps the newest', async () => {
    const vs = await versions('app-env');
    // `ferry expire` with a snapshot rule leaves secrets to their own keep_days.
    await run(['expire', '--keep-last', '1', '--yes'], at(115));
    assert.equal((await versions('app-env')).length, 5, 'ferry expire does not touch secrets versions');
    // Day 115: the cutoff is day 25, so the versions of days 0, 10 and 20 go.
    const dry = json<{ remove: { id: string }[]; keep: { id: string }[] }>(await run(['secrets', 'expire', 'app-env', '--dry-run', '--json'], at(115)));
    assert.deepEqual(
      dry.remove.map((r) => r.id),
      vs.slice(0, 3).map((v) => v.id),
    );
    assert.equal((await versions('app-env')).length, 5, 'a dry run removes nothing');
    const noTerminal = await ferry(['secrets', 'expire', 'app-env'], { env: { ...env, ...at(115) }, cwd: tmp.path });
    quietOutputs.push(noTerminal);
    assert.equal(noTerminal.code, 2, 'no terminal and no --yes: refused');
    assert.equal((await versions('app-env')).length, 5);

    await run(['secrets', 'expire', 'app-env', '--yes'], at(115));
    assert.deepEqual(
      (await versions('app-env')).map((v) => v.id),
      vs.slice(3).map((v) => v.id),
    );
    // The clock 91 days past the newest version: only the newest stays.
    await run(['secrets', 'expire', 'app-env', '--yes'], at(40 + 91));
    const left = await versions('app-env');
    assert.deepEqual(
      left.map((v) => v.id),
      [vs[4].id],
    );
    const to = join(tmp.path, 'newest.env');
    await run(['secrets', 'restore', 'app-env', '--version', 'latest', '--to', to]);
    assert.deepEqual(await readFile(to), contents[4]);
    // Much later still, the newest is never removed.
    const later = json<{ remove: unknown[] }>(await run(['secrets', 'expire', 'app-env', '--yes', '--json'], at(2000)));
    assert.equal(later.remove.length, 0);
    assert.equal((await versions('app-env')).length, 1);
  });

  it('follows the asset keep_days', async () => {
    for (let i = 0; i < 3; i++) {
      await writeFile(join(tmp.path, 'short.env'), `TOKEN=${newSecret('short')}\n`);
      await run(['secrets', 'snapshot', 'short'], at(i * 5));
    }
    const out = json<{ remove: unknown[]; keep: unknown[] }>(await run(['secrets', 'expire', 'short', '--yes', '--json'], at(11)));
    assert.equal(out.remove.length, 1, 'day 0 is older than 7 days at day 11; day 5 is not');
    assert.equal((await versions('short')).length, 2);
  });
});

describe('secrets from a directory', () => {
  const trees: Map<string, Buffer>[] = [];
  const write = async (files: Map<string, Buffer>) => {
    await rm(join(tmp.path, 'tls'), { recursive: true, force: true });
    for (const [p, data] of files) {
      await mkdir(join(tmp.path, 'tls', p, '..'), { recursive: true });
      await writeFile(join(tmp.path, 'tls', p), data);
    }
  };
  const read = async (dir: string) => {
    const out = new Map<string, Buffer>();
    for (const f of await allFiles(dir)) out.set(f.slice(dir.length + 1), await readFile(f));
    return out;
  };

  it('stores a version when a file changes or is added, none when nothing changed, and restores each tree', async () => {
    const t1 = new Map<string, Buffer>([
      ['server.key', Buffer.from(`-----BEGIN PRIVATE KEY-----\n${newSecret('tlskey')}\n-----END PRIVATE KEY-----\n`)],
      ['server.crt', Buffer.from('public certificate\n')],
      ['ca/root.bin', Buffer.concat([randomBytes(5000), Buffer.from(newSecret('bin'))])],
    ]);
    const t2 = new Map(t1).set('server.key', Buffer.from(`rotated ${newSecret('tlskey')}\n`));
    const t3 = new Map(t2).set('ca/extra/new.pem', Buffer.from(`${newSecret('pem')}\n`));
    for (const t of [t1, t2, t3]) {
      trees.push(t);
      await write(t);
      assert.equal(json<{ stored: boolean }>(await run(['secrets', 'snapshot', 'tls', '--json'])).stored, true);
      await write(t);
      assert.equal(json<{ stored: boolean }>(await run(['secrets', 'snapshot', 'tls', '--json'])).stored, false);
    }
    const vs = await versions('tls');
    assert.equal(vs.length, 3);
    for (const [i, v] of vs.entries()) {
      const to = join(tmp.path, `tls-restored-${i}`);
      await run(['secrets', 'restore', 'tls', '--version', v.id, '--to', to]);
      assert.deepEqual(await read(to), trees[i], `version ${i + 1}`);
      for (const f of await allFiles(to)) assert.equal((await stat(f)).mode & 0o777, 0o600);
      const busy = await ferry(['secrets', 'restore', 'tls', '--version', v.id, '--to', to], { env, cwd: tmp.path });
      quietOutputs.push(busy);
      assert.equal(busy.code, 1, 'a non-empty directory is refused');
    }
  });
});

describe('secrets from a command', () => {
  it('stores its stdout per change; a failing or hanging command stores nothing and shows nothing', async () => {
    const outs: string[] = [];
    for (let i = 0; i < 3; i++) {
      const value = `{"password":"${newSecret('vault')}"}\n`;
      outs.push(value);
      await writeFile(join(tmp.path, 'vault-out.txt'), value);
      assert.equal(json<{ stored: boolean }>(await run(['secrets', 'snapshot', 'vault', '--json'])).stored, true);
      assert.equal(json<{ stored: boolean }>(await run(['secrets', 'snapshot', 'vault', '--json'])).stored, false);
    }
    const vs = await versions('vault');
    assert.equal(vs.length, 3);
    for (const [i, v] of vs.entries()) {
      const shown = await ferryOk(['secrets', 'restore', 'vault', '--version', v.id, '--reveal'], { env, cwd: tmp.path });
      assert.equal(shown.stdout, outs[i]);
      const to = join(tmp.path, `vault-${i}.json`);
      await run(['secrets', 'restore', 'vault', '--version', v.id, '--to', to]);
      assert.equal(await readFile(to, 'utf8'), outs[i]);
    }

    // The repository's key is not handed to the command.
    await run(['secrets', 'snapshot', 'probe']);
    assert.equal((await ferryOk(['secrets', 'restore', 'probe', '--version', 'latest', '--reveal'], { env, cwd: tmp.path })).stdout, '0\n');

    const broken = await ferry(['secrets', 'snapshot', 'vault-broken'], { env, cwd: tmp.path });
    quietOutputs.push(broken);
    assert.equal(broken.code, 1);
    assert.match(broken.stderr, /exit code 4.*nothing stored/);
    assert.doesNotMatch(broken.stderr, /oops/, "the command's stderr is not shown either");
    assert.equal((await versions('vault-broken')).length, 0);

    const slow = await ferry(['secrets', 'snapshot', 'vault-slow', '--timeout', '1'], { env, cwd: tmp.path });
    quietOutputs.push(slow);
    assert.equal(slow.code, 1);
    assert.match(slow.stderr, /did not finish within 1 s; nothing stored/);
    assert.equal((await versions('vault-slow')).length, 0);
  });
});

describe('secret values stay secret', () => {
  it('never appear in the output of snapshot, versions, expire or restore without --reveal', () => {
    assert.ok(secrets.length >= 15 && quietOutputs.length > 40);
    for (const r of quietOutputs) {
      for (const s of secrets) {
        assert.ok(!r.stdout.includes(s) && !r.stderr.includes(s), `a secret value appeared in output:\n${r.stdout}\n${r.stderr}`);
      }
    }
  });

  it('never appear in plaintext in the repository', async () => {
    const files = await allFiles(join(tmp.path, 'repo'));
    assert.ok(files.length > 10);
    for (const f of files) {
      const data = await readFile(f);
      for (const s of secrets) assert.equal(data.indexOf(s), -1, `${s} found in ${f}`);
    }
  });
});
