/**
 * Secrets versions: a new encrypted version per change of a secrets asset (a file,
 * a directory, or a command's stdout), listed without values, restored to a file
 * or directory.
 *
 * Contract: a secret value never leaves this module except through `loadVersion`
 * (to a restore or an explicit --reveal). It is never put in an error, a log line,
 * a run record or manifest metadata; change detection uses a keyed fingerprint
 * (HMAC under the repository's MAC key, like blob ids), which reveals nothing of
 * low-entropy values to anyone without the key.
 */
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { lstat, mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { SecretsAsset } from '../config/assets.ts';
import { listSnapshots, resolveSnapshot, type SnapshotRef } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { loadTree } from '../repo/tree.ts';
import { FerryError } from '../util/errors.ts';
import { readNode, saveEntries } from './store.ts';

export const KIND = 'secrets';
/** Secrets are small; a source larger than this is a mistake (wrong path, a log). */
export const MAX_SECRET_BYTES = 64 << 20;
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;

export interface SecretFile {
  /** Relative path: the file's name for a file source, `stdout` for a command, the path in a directory. */
  path: string;
  mode: number;
  data: Buffer;
}

export interface SecretContent {
  source: 'file' | 'dir' | 'command';
  files: SecretFile[];
  dirs: string[];
}

export interface SecretVersion {
  id: string;
  time: string;
  source: SecretContent['source'];
  files: number;
  size: number;
  /** Short keyed fingerprint: equal iff the content is equal, meaningless without the key. */
  fingerprint: string;
}

// ---- reading the source ----------------------------------------------------------

export async function readSecretSource(asset: SecretsAsset, opts: { baseDir: string; timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<SecretContent> {
  const at = (p: string) => (p.startsWith('/') ? p : join(opts.baseDir, p));
  if (asset.file !== undefined) {
    const path = at(asset.file);
    const st = await lstat(path).catch((e: NodeJS.ErrnoException) => {
      throw new FerryError(`cannot read secrets file ${path} of asset ${asset.name}: ${e.code === 'ENOENT' ? 'no such file' : e.code ?? e.message}`);
    });
    if (!st.isFile()) throw new FerryError(`secrets file ${path} of asset ${asset.name} is not a regular file`, { hint: 'use dir: for a directory' });
    if (st.size > MAX_SECRET_BYTES) throw tooBig(asset.name, st.size);
    return { source: 'file', files: [{ path: basename(path), mode: Number(st.mode) & 0o7777, data: await readFile(path) }], dirs: [] };
  }
  if (asset.dir !== undefined) return readDir(asset.name, at(asset.dir));
  return { source: 'command', files: [{ path: 'stdout', mode: 0o600, data: await runCommand(asset.name, asset.command!, opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, opts.env ?? process.env, opts.baseDir) }], dirs: [] };
}

function tooBig(name: string, size: number): FerryError {
  return new FerryError(`secrets asset ${name} is ${size} bytes, more than the ${MAX_SECRET_BYTES >> 20} MiB a secret may be`, { hint: 'check the asset points at the secret itself' });
}

async function readDir(name: string, root: string): Promise<SecretContent> {
  const st = await lstat(root).catch((e: NodeJS.ErrnoException) => {
    throw new FerryError(`cannot read secrets directory ${root} of asset ${name}: ${e.code === 'ENOENT' ? 'no such directory' : e.code ?? e.message}`);
  });
  if (!st.isDirectory()) throw new FerryError(`secrets directory ${root} of asset ${name} is not a directory`, { hint: 'use file: for a single file' });
  const out: SecretContent = { source: 'dir', files: [], dirs: [] };
  let total = 0;
  const visit = async (rel: string) => {
    const names = (await readdir(rel ? join(root, rel) : root)).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const s = await lstat(join(root, r));
      if (s.isDirectory()) {
        out.dirs.push(r);
        await visit(r);
      } else if (s.isFile()) {
        total += s.size;
        if (total > MAX_SECRET_BYTES) throw tooBig(name, total);
        out.files.push({ path: r, mode: Number(s.mode) & 0o7777, data: await readFile(join(root, r)) });
      }
      // Symlinks, sockets and devices are not secrets' content: left out.
    }
  };
  await visit('');
  return out;
}

/**
 * Runs the asset's command (through /bin/sh, in its own process group, killed on
 * timeout) and returns its stdout. Its output is never shown: not on failure either,
 * since a half-printed secret is still a secret.
 */
function runCommand(name: string, command: string, timeoutMs: number, env: NodeJS.ProcessEnv, cwd: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // The repository's own key material is none of the command's business.
    const childEnv: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(env)) if (!/^FERRY_(PASSWORD|NEW_PASSWORD|KEY)/.test(k)) childEnv[k] = v;
    const child = spawn('/bin/sh', ['-c', command], { cwd, env: childEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let size = 0;
    let stderrBytes = 0;
    let failure: FerryError | undefined;
    const kill = (why: FerryError) => {
      failure ??= why;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => kill(new FerryError(`the command of secrets asset ${name} did not finish within ${timeoutMs / 1000} s; nothing stored`, { hint: 'check the command by hand, or raise --timeout' })), timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_SECRET_BYTES) kill(tooBig(name, size));
      else out.push(d);
    });
    child.stderr.on('data', (d: Buffer) => (stderrBytes += d.length));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new FerryError(`cannot run the command of secrets asset ${name}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (failure) return reject(failure);
      if (code !== 0) {
        return reject(
          new FerryError(`the command of secrets asset ${name} failed (${signal ? `killed by ${signal}` : `exit code ${code}`}); nothing stored`, {
            hint: `its output is not shown (${stderrBytes} bytes on stderr); run it by hand to see why`,
          }),
        );
      }
      resolve(Buffer.concat(out));
    });
  });
}

// ---- fingerprints ----------------------------------------------------------------------

/** Keyed fingerprint of the content (paths and bytes; not modes or times). */
export function fingerprint(macKey: Buffer, c: SecretContent): string {
  const h = createHmac('sha256', macKey);
  h.update('ferry-secrets-v1\n');
  for (const d of c.dirs) h.update(`d ${JSON.stringify(d)}\n`);
  for (const f of c.files) {
    h.update(`f ${JSON.stringify(f.path)} ${f.data.length}\n`);
    h.update(f.data);
  }
  return h.digest('hex');
}

const SHORT = 16;

function versionOf(r: SnapshotRef): SecretVersion {
  const m = r.manifest;
  const meta = (m.meta ?? {}) as { source?: SecretContent['source']; fingerprint?: string };
  return { id: r.id, time: m.endTime, source: meta.source ?? 'file', files: m.stats.files, size: m.stats.bytes, fingerprint: (meta.fingerprint ?? '').slice(0, SHORT) };
}

// ---- versions ---------------------------------------------------------------------------

export async function listVersions(repo: Repository, asset: string): Promise<SecretVersion[]> {
  return (await listSnapshots(repo, { kind: KIND, asset })).map(versionOf);
}

export interface SnapshotResult {
  stored: boolean;
  version: SecretVersion;
  /** The version it was compared with. */
  previous?: SecretVersion;
}

/** Stores a new version when the content differs from the newest one. */
export async function snapshotSecrets(repo: Repository, asset: SecretsAsset, content: SecretContent): Promise<SnapshotResult> {
  const fp = fingerprint(repo.key.mac, content);
  const prior = await listSnapshots(repo, { kind: KIND, asset: asset.name });
  const last = prior.at(-1);
  const lastFp = (last?.manifest.meta as { fingerprint?: string } | undefined)?.fingerprint;
  if (last && lastFp === fp) return { stored: false, version: versionOf(last), previous: versionOf(last) };
  const where = asset.file ?? asset.dir ?? 'command';
  const r = await saveEntries(repo, {
    kind: KIND,
    asset: asset.name,
    paths: [asset.command !== undefined ? 'command' : where],
    dirs: content.dirs,
    entries: content.files.map((f) => ({ path: f.path, mode: f.mode, data: f.data })),
    meta: { source: content.source, fingerprint: fp },
    ...(last ? { parent: last.id } : {}),
  });
  return { stored: true, version: versionOf({ id: r.id, manifest: r.manifest }), ...(last ? { previous: versionOf(last) } : {}) };
}

/** A version's content (the only way values leave the repository). */
export async function loadVersion(repo: Repository, asset: string, ref: string): Promise<{ version: SecretVersion; content: SecretContent }> {
  const r = await resolveSnapshot(repo, ref, { kind: KIND, asset });
  const version = versionOf(r);
  const nodes = await loadTree(repo, r.manifest.tree);
  const content: SecretContent = { source: version.source, files: [], dirs: [] };
  for (const n of nodes) {
    if (n.type === 'dir' && n.path) content.dirs.push(n.path);
    else if (n.type === 'file') content.files.push({ path: n.path, mode: n.mode, data: await readNode(repo, n) });
  }
  return { version, content };
}

// ---- writing a version out ---------------------------------------------------------------

/**
 * Writes a version to `target`: the file itself for a file or command source, the
 * tree for a directory source. Files are written with mode 0600 (directories 0700)
 * whatever they had, then renamed into place; an existing target is refused unless
 * `force`.
 */
export async function writeVersion(content: SecretContent, target: string, force: boolean): Promise<{ files: number; bytes: number }> {
  const existing = await lstat(target).catch(() => undefined);
  if (content.source !== 'dir') {
    if (existing && !force) throw new FerryError(`${target} already exists; restore would overwrite it`, { hint: 'choose another --to, or pass --force to overwrite' });
    if (existing?.isDirectory()) throw new FerryError(`${target} is a directory; this version is a single file`, { hint: 'give a file path to --to' });
    await writeFileSafely(target, content.files[0]?.data ?? Buffer.alloc(0));
    return { files: 1, bytes: content.files[0]?.data.length ?? 0 };
  }
  if (existing) {
    if (!existing.isDirectory()) throw new FerryError(`${target} exists and is not a directory; this version is a directory`, { hint: 'give an empty or new directory to --to' });
    const names = await readdir(target);
    if (names.length && !force) throw new FerryError(`directory ${target} is not empty (it holds ${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''}); restore would overwrite it`, { hint: 'choose an empty or new directory, or pass --force to overwrite' });
  }
  await mkdir(target, { recursive: true, mode: 0o700 });
  for (const d of content.dirs) await mkdir(join(target, d), { recursive: true, mode: 0o700 });
  let bytes = 0;
  for (const f of content.files) {
    const p = join(target, f.path);
    const st = await lstat(p).catch(() => undefined);
    if (st?.isDirectory()) await rm(p, { recursive: true, force: true });
    await writeFileSafely(p, f.data);
    bytes += f.data.length;
  }
  return { files: content.files.length, bytes };
}

let tmpCounter = 0;

/** Writes `data` to a temporary name beside `path` (mode 0600 from creation), fsyncs, renames. */
async function writeFileSafely(path: string, data: Buffer): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.ferry-${process.pid}-${++tmpCounter}`);
  const fh = await open(tmp, 'wx', 0o600).catch((e: NodeJS.ErrnoException) => {
    throw new FerryError(`cannot write ${path}: ${e.code ?? e.message}`);
  });
  try {
    await fh.chmod(0o600);
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw new FerryError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  await fh.close();
  await rename(tmp, path);
}
