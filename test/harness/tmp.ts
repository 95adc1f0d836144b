/**
 * Temporary directories for tests, the `postgres` OS user, and cleanup at exit.
 *
 * Owns: creating throwaway directories under $FERRY_TEST_TMP (or os.tmpdir()),
 * handing them to the `postgres` user when the tests run as root (PostgreSQL
 * refuses to run as root), and one exit hook that first runs registered
 * "stop" hooks (clusters, killed children) and then removes leftover temp
 * directories. Set FERRY_TEST_KEEP=1 to keep the directories for debugging.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { lchown, lstat, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

export interface TempDir {
  path: string;
  /** Removes the directory and everything in it. Safe to call twice. */
  cleanup(): void;
}

export interface PostgresUser {
  uid: number;
  gid: number;
  home: string;
}

const liveDirs = new Set<string>();
const stopHooks = new Set<() => void>();
let exitHookInstalled = false;

/** The base directory for temp dirs: $FERRY_TEST_TMP or the OS temp dir. */
export function tempBase(): string {
  return resolve(process.env.FERRY_TEST_TMP || tmpdir());
}

/**
 * Creates a fresh directory `<base>/<prefix>XXXXXX`. With `forPostgres`, the
 * directory is chowned to the postgres user when running as root, so server
 * processes and archive_command can write into it.
 */
export function makeTempDir(prefix = 'ferry-', opts: { forPostgres?: boolean } = {}): TempDir {
  const base = tempBase();
  mkdirSync(base, { recursive: true });
  const path = mkdtempSync(join(base, prefix));
  liveDirs.add(path);
  installExitHook();
  if (opts.forPostgres) chownToPostgresSync(path);
  return {
    path,
    cleanup() {
      liveDirs.delete(path);
      rmSync(path, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}

/** True when this process runs as root and must hand server work to `postgres`. */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

let cachedUser: PostgresUser | undefined;

/** The `postgres` OS user's uid, gid and home. Throws a clear error if there is none. */
export function postgresUser(): PostgresUser {
  if (cachedUser) return cachedUser;
  try {
    const line = execFileSync('getent', ['passwd', 'postgres'], { encoding: 'utf8' }).trim();
    const f = line.split(':');
    cachedUser = { uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/' };
  } catch {
    try {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      cachedUser = { uid, gid, home: '/' };
    } catch {
      throw new Error(
        'tests run as root but there is no `postgres` OS user to run PostgreSQL as; ' +
          'install the PostgreSQL server package (apt-get install postgresql-15) or run the tests as a normal user',
      );
    }
  }
  if (!Number.isInteger(cachedUser.uid) || !Number.isInteger(cachedUser.gid)) {
    throw new Error(`could not read the uid/gid of the postgres OS user (got ${JSON.stringify(cachedUser)})`);
  }
  return cachedUser;
}

/** spawn/execFile options that run a child as `postgres` when we are root; empty otherwise. */
export function asPostgres(): { uid?: number; gid?: number } {
  if (!isRoot()) return {};
  const u = postgresUser();
  return { uid: u.uid, gid: u.gid };
}

/**
 * Recursively chowns `path` to the postgres user when running as root (a no-op
 * otherwise). Symlinks are chowned themselves but not followed. Also checks
 * that every ancestor directory lets `postgres` through.
 */
export async function chownToPostgres(path: string): Promise<void> {
  if (!isRoot()) return;
  const { uid, gid } = postgresUser();
  assertTraversable(path, uid, gid);
  const walk = async (p: string): Promise<void> => {
    await lchown(p, uid, gid);
    const st = await lstat(p);
    if (!st.isDirectory()) return;
    for (const name of await readdir(p)) await walk(join(p, name));
  };
  await walk(path);
}

/** Synchronous variant of chownToPostgres, for a single fresh directory. */
export function chownToPostgresSync(path: string): void {
  if (!isRoot()) return;
  const { uid, gid } = postgresUser();
  assertTraversable(path, uid, gid);
  execFileSync('chown', ['-R', '-h', `${uid}:${gid}`, path]);
}

/** Throws if some ancestor of `path` cannot be searched by uid/gid (e.g. a temp base under /root). */
function assertTraversable(path: string, uid: number, gid: number): void {
  for (let dir = dirname(resolve(path)); ; dir = dirname(dir)) {
    const st = statSync(dir);
    const ok = st.uid === uid ? st.mode & 0o100 : st.gid === gid ? st.mode & 0o010 : st.mode & 0o001;
    if (!ok) {
      throw new Error(
        `the postgres OS user cannot reach ${path}: ${dir} is not searchable by it (mode ${(st.mode & 0o777).toString(8)}); ` +
          'set FERRY_TEST_TMP to a directory under /tmp',
      );
    }
    if (dir === dirname(dir)) return;
  }
}

/**
 * Registers a synchronous hook run at process exit (or SIGINT/SIGTERM/SIGHUP)
 * before leftover temp dirs are removed: used to stop clusters and kill
 * children. Returns a function that unregisters it.
 */
export function onExitStop(hook: () => void): () => void {
  installExitHook();
  stopHooks.add(hook);
  return () => stopHooks.delete(hook);
}

function runExitCleanup(): void {
  for (const hook of [...stopHooks].reverse()) {
    try {
      hook();
    } catch {
      // best effort: the process is exiting
    }
  }
  stopHooks.clear();
  if (process.env.FERRY_TEST_KEEP === '1') return;
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', runExitCleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      runExitCleanup();
      process.removeListener(sig, handler);
      process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}
