/**
 * Throwaway PostgreSQL clusters for integration tests.
 *
 * Owns: finding the server binaries (pgBinDir), initdb into a temp dir, start /
 * stop / restart / crash (kill9) of a cluster as the `postgres` OS user when
 * the tests run as root, and stopping every leftover cluster at process exit,
 * always by data directory (`pg_ctl -D dir -m immediate stop`), never by name.
 *
 * archive_command / restore_command run as the `postgres` user, with the data
 * directory as working directory and the postmaster's environment (PG* variables
 * of the test process are removed, `opts.env` is added). So they MUST use
 * absolute paths (e.g. `${process.execPath} /work/main/bin/ferry wal push %p`),
 * and every file they touch (repository, key file) must be readable/writable
 * by `postgres` — see chownToPostgres / makeTempDir(..., { forPostgres: true }).
 *
 * Binaries missing is an Error, never a skip: tests must fail loudly.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { asPostgres, chownToPostgres, isRoot, makeTempDir, onExitStop, postgresUser, type TempDir } from './tmp.ts';
import { pgBinDir } from '../../src/postgres/binaries.ts';

export interface StartClusterOptions {
  /** Extra initdb arguments, e.g. ['--data-checksums']. Ignored with `dataDir`. */
  initdbArgs?: string[];
  /** Extra postgresql.conf lines (appended, so they win), e.g. 'archive_mode = on'. */
  conf?: string[];
  /** Start this existing data directory (e.g. one a test restored) instead of running initdb. It is not deleted by destroy(). */
  dataDir?: string;
  /** TCP port; a free one is picked when omitted. */
  port?: number;
  /** Extra environment for the postmaster, seen by archive_command (e.g. FERRY_REPO, FERRY_PASSWORD_FILE). */
  env?: Record<string, string>;
  /** Seconds pg_ctl waits for start/stop (recovery may take a while). Default 120. */
  timeoutSec?: number;
}

export type StopMode = 'smart' | 'fast' | 'immediate';

export interface RunResult {
  stdout: string;
  stderr: string;
}

export interface TestCluster {
  readonly dataDir: string;
  readonly port: number;
  /** Directory of the unix socket; also `host` for libpq. */
  readonly socketDir: string;
  readonly host: string;
  readonly user: 'postgres';
  readonly binDir: string;
  /** Server log (pg_ctl -l). */
  readonly logFile: string;
  /** Temp directory holding socket, log and (unless `dataDir` was given) the data directory. */
  readonly tmpDir: string;
  /** PGHOST/PGPORT/PGUSER/PGDATABASE/PGDATA for libpq clients and `ferry` child processes. */
  readonly env: Record<string, string>;
  /** postgresql://… URL over the unix socket, for node-postgres and libpq. */
  readonly connString: string;
  /** Runs one statement through node-postgres (a fresh connection) and returns its rows. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- rows are whatever the SQL selects
  query<T extends Record<string, unknown> = Record<string, any>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** A connected node-postgres client; the caller ends it. */
  client(): Promise<pg.Client>;
  /** Runs SQL (one or more statements) through psql -XAtq with ON_ERROR_STOP; returns stdout. */
  psql(sql: string, db?: string): Promise<string>;
  /** Runs pgbench with the cluster's env (e.g. ['-i', '-s', '1']); returns stdout. */
  pgbench(args: string[]): Promise<string>;
  /** Runs any binary from binDir (as postgres when root) with the cluster's env, e.g. run('pg_controldata', [c.dataDir]). */
  run(bin: string, args: string[]): Promise<RunResult>;
  /** Appends postgresql.conf lines (they win over earlier ones); takes effect on restart() or a reload. */
  appendConf(lines: string[]): void;
  /** Starts the server (after stop or kill9); crash recovery happens here. */
  start(): Promise<void>;
  /** Stops the server; a no-op when it is not running. */
  stop(mode?: StopMode): Promise<void>;
  restart(): Promise<void>;
  /** SIGKILLs the postmaster (pid from postmaster.pid) and its children: a crash. */
  kill9(): Promise<void>;
  /** Whether a live postmaster owns the data directory. */
  isRunning(): boolean;
  /** Last `lines` lines of the server log. */
  logTail(lines?: number): string;
  /** Stops (fast, then immediate) and removes the temp dir. */
  destroy(): Promise<void>;
}

/** Data dirs of clusters that may be running; stopped by data dir at exit. */
const registry = new Set<string>();
let registryHook = false;

/**
 * Where the PostgreSQL server binaries are: the product's own lookup
 * ($FERRY_PG_BIN, /usr/lib/postgresql/<v>/bin, pg_config); scripts/setup.mjs repeats it.
 */
export { pgBinDir };

/** Picks a free TCP port on 127.0.0.1 by binding port 0. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/** Starts a fresh (or the given) cluster and returns a handle. Stop it with destroy(). */
export async function startCluster(opts: StartClusterOptions = {}): Promise<TestCluster> {
  const binDir = pgBinDir();
  const tmp = makeTempDir('ferry-pg-', { forPostgres: true });
  try {
    const dataDir = opts.dataDir ?? join(tmp.path, 'data');
    const socketDir = join(tmp.path, 'sock');
    if (socketDir.length > 90) {
      throw new Error(`socket dir path ${socketDir} is too long for a unix socket; set FERRY_TEST_TMP to a shorter directory`);
    }
    const logFile = join(tmp.path, 'postgres.log');
    const spawnEnv = postmasterEnv(opts.env);
    await runAsPostgres(join(binDir, 'pg_ctl'), ['--version'], spawnEnv, tmp.path); // fails early and clearly if unusable
    mkdirSync(socketDir, { mode: 0o700 });
    await chownToPostgres(socketDir);

    if (opts.dataDir) {
      const pid = readPostmasterPid(dataDir);
      if (pid !== undefined && pidAlive(pid)) {
        throw new StartRefused(`a postmaster (pid ${pid}) is already running in ${dataDir}; stop it before starting it again`);
      }
      await chownToPostgres(dataDir);
      execFileSync('chmod', ['0700', dataDir]);
    } else {
      // --no-sync only skips initdb's final flush (it matters for an OS crash of the test host);
      // the server itself runs with fsync on.
      await runAsPostgres(
        join(binDir, 'initdb'),
        ['-D', dataDir, '--auth=trust', '-U', 'postgres', '--encoding=UTF8', '--locale=C', '--no-sync', ...(opts.initdbArgs ?? [])],
        spawnEnv,
        tmp.path,
      );
      appendFileSync(join(dataDir, 'postgresql.conf'), harnessConf());
    }
    if (opts.conf?.length) {
      appendFileSync(join(dataDir, 'postgresql.conf'), `\n# added by the test\n${opts.conf.join('\n')}\n`);
    }
    return await launch({ binDir, tmp, dataDir, socketDir, logFile, spawnEnv, opts });
  } catch (err) {
    // pg_ctl may have timed out with a postmaster still running: stop it before removing its files.
    const dataDir = opts.dataDir ?? join(tmp.path, 'data');
    const pid = readPostmasterPid(dataDir);
    if (!(err instanceof StartRefused) && pid !== undefined && pidAlive(pid)) {
      stopByDataDirSync(join(binDir, 'pg_ctl'), dataDir);
    }
    registry.delete(dataDir);
    tmp.cleanup();
    throw err;
  }
}

/** The data directory belongs to a server we did not start: leave it alone. */
class StartRefused extends Error {}

function harnessConf(): string {
  return [
    '',
    '# ferry test harness',
    "listen_addresses = '127.0.0.1'",
    'fsync = on',
    'synchronous_commit = on',
    'full_page_writes = on',
    'wal_level = replica',
    'max_wal_senders = 4',
    'logging_collector = off',
    "log_line_prefix = '%m [%p] '",
    'shared_buffers = 32MB',
    '',
  ].join('\n');
}

/** The postmaster's environment: ours minus PG* (they would confuse the server), plus `extra`. */
function postmasterEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  if (isRoot()) {
    env.HOME = postgresUser().home;
    env.USER = env.LOGNAME = 'postgres';
  }
  return { ...env, ...extra };
}

interface LaunchArgs {
  binDir: string;
  tmp: TempDir;
  dataDir: string;
  socketDir: string;
  logFile: string;
  spawnEnv: NodeJS.ProcessEnv;
  opts: StartClusterOptions;
}

async function launch(a: LaunchArgs): Promise<TestCluster> {
  const { binDir, tmp, dataDir, socketDir, logFile, spawnEnv, opts } = a;
  const timeout = String(opts.timeoutSec ?? 120);
  const pgCtl = join(binDir, 'pg_ctl');
  let port = opts.port ?? (await freePort());

  const clientEnv = (): Record<string, string> => ({
    PGHOST: socketDir,
    PGPORT: String(port),
    PGUSER: 'postgres',
    PGDATABASE: 'postgres',
    PGDATA: dataDir,
  });
  const clientProcEnv = (): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
    return { ...env, ...clientEnv() };
  };
  const connString = (): string =>
    `postgresql://postgres@${encodeURIComponent(socketDir)}:${port}/postgres`;

  const isRunning = (): boolean => {
    const pid = readPostmasterPid(dataDir);
    return pid !== undefined && pidAlive(pid);
  };

  const logTail = (lines = 40): string => {
    try {
      return readFileSync(logFile, 'utf8').split('\n').slice(-lines - 1).join('\n');
    } catch {
      return '(no server log)';
    }
  };

  const start = async (): Promise<void> => {
    if (isRunning()) return;
    removeStaleLocks(dataDir, socketDir);
    for (let attempt = 0; ; attempt++) {
      const o = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${shq(socketDir)}`;
      try {
        await runAsPostgres(pgCtl, ['-D', dataDir, '-l', logFile, '-w', '-t', timeout, '-o', o, 'start'], spawnEnv, tmp.path);
        registerCluster(dataDir, pgCtl);
        return;
      } catch (err) {
        const log = logTail(20);
        // Another process may have taken the port between freePort() and bind: pick another.
        if (!opts.port && attempt < 3 && /could not (bind|create any TCP)|Address already in use/i.test(log)) {
          port = await freePort();
          continue;
        }
        throw new Error(`could not start PostgreSQL in ${dataDir}: ${(err as Error).message}\n--- server log ---\n${log}`);
      }
    }
  };

  const stop = async (mode: StopMode = 'fast'): Promise<void> => {
    if (!isRunning()) {
      registry.delete(dataDir);
      return;
    }
    await runAsPostgres(pgCtl, ['-D', dataDir, '-m', mode, '-w', '-t', timeout, 'stop'], spawnEnv, tmp.path);
    registry.delete(dataDir);
  };

  const kill9 = async (): Promise<void> => {
    const pid = readPostmasterPid(dataDir);
    if (pid === undefined || !pidAlive(pid)) throw new Error(`kill9: no running postmaster for ${dataDir}`);
    const children = childPids(pid);
    process.kill(pid, 'SIGKILL');
    for (const c of children) {
      try {
        process.kill(c, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const p of [pid, ...children]) await waitGone(p, 10_000);
    registry.delete(dataDir);
  };

  const query = async <T extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]> => {
    const c = new pg.Client({ connectionString: connString() });
    await c.connect();
    try {
      const r = await c.query(sql, params as unknown[] | undefined);
      return r.rows as T[];
    } finally {
      await c.end();
    }
  };

  const run = async (bin: string, args: string[], input?: string): Promise<RunResult> => {
    const env = { ...clientProcEnv(), ...(isRoot() ? { HOME: postgresUser().home } : {}) };
    return runAsPostgres(join(binDir, bin), args, env, tmp.path, input);
  };

  const cluster: TestCluster = {
    dataDir,
    get port() {
      return port;
    },
    socketDir,
    host: socketDir,
    user: 'postgres',
    binDir,
    logFile,
    tmpDir: tmp.path,
    get env() {
      return clientEnv();
    },
    get connString() {
      return connString();
    },
    query,
    async client() {
      const c = new pg.Client({ connectionString: connString() });
      await c.connect();
      return c;
    },
    async psql(sql: string, db = 'postgres') {
      const r = await run('psql', ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-d', db, '-f', '-'], sql);
      return r.stdout;
    },
    async pgbench(args: string[]) {
      return (await run('pgbench', args)).stdout;
    },
    run: (bin, args) => run(bin, args),
    appendConf(lines: string[]) {
      appendFileSync(join(dataDir, 'postgresql.conf'), `\n${lines.join('\n')}\n`);
    },
    start,
    stop,
    restart: async () => {
      await stop('fast');
      await start();
    },
    kill9,
    isRunning,
    logTail,
    async destroy() {
      try {
        await stop('fast');
      } catch {
        await stop('immediate').catch(() => undefined);
      }
      tmp.cleanup();
    },
  };
  await start();
  return cluster;
}

/** Runs a file as the postgres user when root; rejects with its output on failure. */
function runAsPostgres(file: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, input?: string): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const child = execFile(
      file,
      args,
      { env, cwd, ...asPostgres(), maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) {
          const what = [file, ...args].join(' ');
          const out = `${stderr}${stdout}`.trim();
          reject(new Error(`${what} failed (${err.code ?? err.signal ?? err.message})${out ? `:\n${out}` : ''}`));
        } else {
          resolveRun({ stdout, stderr });
        }
      },
    );
    // Tools that never read stdin may exit first: ignore EPIPE on it.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

function registerCluster(dataDir: string, pgCtl: string): void {
  registry.add(dataDir);
  if (registryHook) return;
  registryHook = true;
  onExitStop(() => {
    for (const dir of registry) stopByDataDirSync(pgCtl, dir);
    registry.clear();
  });
}

/** `pg_ctl -D dir -m immediate stop`, synchronously (usable in an exit hook). */
function stopByDataDirSync(pgCtl: string, dataDir: string): void {
  spawnSync(pgCtl, ['-D', dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop'], {
    ...asPostgres(),
    cwd: '/',
    stdio: 'ignore',
  });
}

/** Single-quotes a value for the shell pg_ctl runs the postmaster through. */
function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function readPostmasterPid(dataDir: string): number | undefined {
  return readLockPid(join(dataDir, 'postmaster.pid'));
}

function readLockPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').split('\n')[0]?.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** State letter from /proc/<pid>/stat, or undefined when the process is gone. */
function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie (in containers whose init does not reap, killed postmasters stay zombies). */
export function pidAlive(pid: number): boolean {
  if (existsSync('/proc/self/stat')) {
    const s = procState(pid);
    return s !== undefined && s !== 'Z' && s !== 'X';
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function childPids(ppid: number): number[] {
  const out: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return out;
  }
  for (const n of entries) {
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      const ppidField = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppidField === ppid) out.push(Number(n));
    } catch {
      // raced with exit
    }
  }
  return out;
}

async function waitGone(pid: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (pidAlive(pid)) {
    if (Date.now() > until) throw new Error(`process ${pid} still alive ${ms} ms after SIGKILL`);
    await sleep(20);
  }
}

/**
 * After a crash, postmaster.pid and the socket lock file name a dead (or zombie)
 * pid. PostgreSQL treats a zombie's pid as a live server and refuses to start,
 * so remove lock files whose owner is not alive, as a reboot would.
 */
function removeStaleLocks(dataDir: string, socketDir: string): void {
  const locks = [join(dataDir, 'postmaster.pid')];
  try {
    for (const n of readdirSync(socketDir)) if (/^\.s\.PGSQL\.\d+\.lock$/.test(n)) locks.push(join(socketDir, n));
  } catch {
    // no socket dir yet
  }
  for (const f of locks) {
    const pid = readLockPid(f);
    if (pid !== undefined && !pidAlive(pid)) {
      try {
        unlinkSync(f);
      } catch {
        // gone already
      }
    }
  }
}
