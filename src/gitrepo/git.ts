/**
 * Git repositories kept as bundle snapshots: `git bundle create --all` stored as a
 * snapshot of kind `git` when the refs (or HEAD) changed since the last one, with
 * the refs recorded in the manifest; restore fetches every ref from the bundle into
 * a new repository and checks the refs came back as recorded.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GitAsset } from '../config/assets.ts';
import { listSnapshots, resolveSnapshot, type SnapshotRef } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { loadTree } from '../repo/tree.ts';
import { saveEntries, writeNode } from '../secrets/store.ts';
import { FerryError, IntegrityError } from '../util/errors.ts';

export const KIND = 'git';
export const GIT = '/usr/bin/git';
const BUNDLE = 'repo.bundle';

export interface GitState {
  /** Every ref (refs/heads/…, refs/tags/…, …) -> object id. */
  refs: Record<string, string>;
  /** The branch HEAD points at, or null when HEAD is detached. */
  head: string | null;
  /** The commit HEAD resolves to (null on an unborn branch). */
  headCommit: string | null;
  bare: boolean;
}

export interface GitSnapshot {
  id: string;
  time: string;
  refs: number;
  head: string | null;
  headCommit: string | null;
  size: number;
}

function ensureGit(): void {
  if (!existsSync(GIT)) throw new FerryError(`git is not installed (${GIT} not found)`, { hint: 'install git (apt-get install git) to snapshot or restore git assets' });
}

/** Runs git; a failure is one sentence with git's own first line of complaint. */
function git(args: string[], opts: { allowFail?: boolean } = {}): Promise<{ code: number; stdout: string }> {
  ensureGit();
  return new Promise((resolve, reject) => {
    // A clean environment for git: no GIT_DIR & co. from the caller, no prompts, stable output.
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GIT_')) env[k] = v;
    Object.assign(env, { GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' });
    execFile(GIT, args, { env, maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout });
      const code = typeof err.code === 'number' ? err.code : 1;
      if (opts.allowFail && typeof err.code === 'number') return resolve({ code, stdout });
      const why = String(stderr).trim().split('\n')[0] || err.message;
      reject(new FerryError(`git ${args.filter((a) => !a.startsWith('-c')).slice(0, 4).join(' ')} failed: ${why}`));
    });
  });
}

export async function gitState(path: string): Promise<GitState> {
  if (!existsSync(path)) throw new FerryError(`git repository ${path} does not exist`, { hint: 'check repo: of the git asset in ferry.yaml' });
  const probe = await git(['-C', path, 'rev-parse', '--is-bare-repository'], { allowFail: true });
  if (probe.code !== 0) throw new FerryError(`${path} is not a git repository`, { hint: 'repo: of a git asset names a repository (bare or with a work tree)' });
  const refs: Record<string, string> = {};
  const list = await git(['-C', path, 'for-each-ref', '--format=%(objectname) %(refname)']);
  for (const line of list.stdout.split('\n')) {
    if (!line) continue;
    const sp = line.indexOf(' ');
    refs[line.slice(sp + 1)] = line.slice(0, sp);
  }
  const sym = await git(['-C', path, 'symbolic-ref', '-q', 'HEAD'], { allowFail: true });
  const commit = await git(['-C', path, 'rev-parse', '-q', '--verify', 'HEAD^{commit}'], { allowFail: true });
  return { refs, head: sym.code === 0 ? sym.stdout.trim() : null, headCommit: commit.code === 0 ? commit.stdout.trim() : null, bare: probe.stdout.trim() === 'true' };
}

export function sameState(a: GitState, b: GitState): boolean {
  const ka = Object.keys(a.refs).sort();
  const kb = Object.keys(b.refs).sort();
  return a.head === b.head && a.headCommit === b.headCommit && ka.length === kb.length && ka.every((k, i) => k === kb[i] && a.refs[k] === b.refs[k]);
}

function stateOf(r: SnapshotRef): GitState {
  return (r.manifest.meta ?? {}) as unknown as GitState;
}

function snapshotOf(r: SnapshotRef): GitSnapshot {
  const s = stateOf(r);
  return { id: r.id, time: r.manifest.endTime, refs: Object.keys(s.refs ?? {}).length, head: s.head ?? null, headCommit: s.headCommit ?? null, size: r.manifest.stats.bytes };
}

export async function listGitSnapshots(repo: Repository, asset: string): Promise<GitSnapshot[]> {
  return (await listSnapshots(repo, { kind: KIND, asset })).map(snapshotOf);
}

/** Stores a bundle of every ref when the refs or HEAD changed since the newest snapshot. */
export async function snapshotGit(repo: Repository, asset: GitAsset, path: string): Promise<{ stored: boolean; snapshot: GitSnapshot; previous?: GitSnapshot }> {
  const state = await gitState(path);
  if (Object.keys(state.refs).length === 0) throw new FerryError(`git repository ${path} of asset ${asset.name} has no commits to keep`);
  const prior = await listSnapshots(repo, { kind: KIND, asset: asset.name });
  const last = prior.at(-1);
  if (last && sameState(stateOf(last), state)) return { stored: false, snapshot: snapshotOf(last), previous: snapshotOf(last) };
  const tmp = await mkdtemp(join(tmpdir(), 'ferry-git-'));
  try {
    const file = join(tmp, BUNDLE);
    // Objects not yet in a pack go in uncompressed: the repository compresses them (zstd) anyway, and
    // plain bytes dedup between snapshots where deflated ones would not.
    await git(['-c', 'pack.compression=0', '-C', path, 'bundle', 'create', '--quiet', file, '--all']);
    // What the bundle holds is what is kept (a push after the refs were read is in it or not, as git decided).
    const bundled = await bundleRefs(file);
    const { HEAD: headCommit, ...refs } = bundled;
    const kept: GitState = { refs, head: state.head, headCommit: headCommit ?? state.headCommit, bare: state.bare };
    const r = await saveEntries(repo, {
      kind: KIND,
      asset: asset.name,
      paths: [path],
      entries: [{ path: BUNDLE, mode: 0o600, file }],
      meta: { ...kept },
      ...(last ? { parent: last.id } : {}),
    });
    return { stored: true, snapshot: snapshotOf({ id: r.id, manifest: r.manifest }), ...(last ? { previous: snapshotOf(last) } : {}) };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The refs a bundle holds, as git reads them. */
async function bundleRefs(file: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const r = await git(['bundle', 'list-heads', file]);
  for (const line of r.stdout.split('\n')) {
    const [id, name] = line.split(' ');
    if (id && name) out[name] = id;
  }
  return out;
}

/**
 * Restores a snapshot into `dir` (missing or empty): a new repository (bare when the
 * source was, or when asked) holding every recorded ref, HEAD as it was, and for a
 * non-bare repository the work tree checked out. The refs are checked afterwards.
 */
export async function restoreGit(repo: Repository, asset: string, ref: string, dir: string, opts: { bare?: boolean } = {}): Promise<{ snapshot: GitSnapshot; refs: number; bare: boolean }> {
  ensureGit();
  let created = false;
  try {
    const names = await readdir(dir);
    if (names.length) throw new FerryError(`directory ${dir} is not empty (it holds ${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''}); restore would overwrite it`, { hint: 'restore into an empty or new directory' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') throw new FerryError(`${dir} exists and is not a directory`, { hint: 'restore into an empty or new directory' });
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    created = true;
  }
  const snap = await resolveSnapshot(repo, ref, { kind: KIND, asset });
  const state = stateOf(snap);
  const node = (await loadTree(repo, snap.manifest.tree)).find((n) => n.path === BUNDLE && n.type === 'file');
  if (!node) throw new IntegrityError(`snapshot ${snap.id.slice(0, 12)} of ${asset} holds no ${BUNDLE}`);
  const bare = opts.bare ?? state.bare;
  const tmp = await mkdtemp(join(tmpdir(), 'ferry-git-'));
  try {
    const file = join(tmp, BUNDLE);
    const fh = await open(file, 'wx', 0o600);
    try {
      await writeNode(repo, node, fh);
    } finally {
      await fh.close();
    }
    await mkdir(dir, { recursive: true });
    await git(['init', '--quiet', ...(bare ? ['--bare'] : []), dir]);
    await git(['-C', dir, 'fetch', '--quiet', '--no-tags', '--update-head-ok', file, '+refs/*:refs/*']);
    if (state.head) await git(['-C', dir, 'symbolic-ref', 'HEAD', state.head]);
    else if (state.headCommit) await git(['-C', dir, 'update-ref', '--no-deref', 'HEAD', state.headCommit]);
    if (!bare && state.headCommit) await git(['-C', dir, 'reset', '--quiet', '--hard']);
    const got = await gitState(dir);
    const want = state.refs ?? {};
    const wrong = Object.keys(want).filter((k) => got.refs[k] !== want[k]);
    const extra = Object.keys(got.refs).filter((k) => !(k in want));
    if (wrong.length || extra.length) {
      throw new IntegrityError(`restored repository ${dir} does not match snapshot ${snap.id.slice(0, 12)}: ${wrong.length} ref(s) differ, ${extra.length} unexpected (${[...wrong, ...extra].slice(0, 3).join(', ')})`);
    }
    return { snapshot: snapshotOf(snap), refs: Object.keys(want).length, bare };
  } catch (e) {
    // Leave the directory as it was found: gone, or empty.
    if (created) await rm(dir, { recursive: true, force: true });
    else for (const n of await readdir(dir).catch(() => [])) await rm(join(dir, n), { recursive: true, force: true });
    throw e;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
