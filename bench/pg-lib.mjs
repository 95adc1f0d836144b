// Helpers for bench/pg.mjs: PostgreSQL clusters run as the postgres OS user (when root), commands
// run as that user with wall-clock timing, pgBackRest installation and configuration, cleanup.
// Plain Node ESM (Node 20), no dependencies.
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { die, log } from './lib.mjs';

// ---------------------------------------------------------------------------------------------
// the postgres OS user

const isRoot = () => process.getuid?.() === 0;

function passwd(name) {
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const f = r.stdout.trim().split(':');
  return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] };
}

/** The OS user clusters and tools run as: postgres when we are root, else ourselves. */
export const PG_USER = isRoot()
  ? passwd('postgres') ?? die('running as root but there is no postgres OS user (install postgresql-15)')
  : { name: process.env.USER ?? 'me', uid: process.getuid(), gid: process.getgid(), home: process.env.HOME };

/** spawn() options that make the child the postgres user (no runuser, so no extra exec per command). */
export const asPg = () => (isRoot() ? { uid: PG_USER.uid, gid: PG_USER.gid } : {});

/** chown -R to the postgres user (no-op when not root). */
export function chownPg(path) {
  if (!isRoot()) return;
  const r = spawnSync('chown', ['-R', `${PG_USER.uid}:${PG_USER.gid}`, path]);
  if (r.status !== 0) throw new Error(`chown -R postgres ${path} failed`);
}

/** Environment for commands run as the postgres user: ours without PG* / FERRY_*, plus `extra`. */
/**
 * Node 20 reads NODE_EXTRA_CA_CERTS at every start, before any of Ferry's code runs: with the
 * system bundle (this sandbox sets it for every process) that is about 40 ms per `ferry wal
 * push`. A database host does not normally set it, so the clusters and tools run without it,
 * unless `--keep-node-extra-ca-certs` (bench/pg.mjs) asks to measure with it.
 */
export const envOptions = { keepNodeExtraCaCerts: false };

export function pgEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && !k.startsWith('FERRY_')) env[k] = v;
  if (!envOptions.keepNodeExtraCaCerts) delete env.NODE_EXTRA_CA_CERTS;
  if (isRoot()) Object.assign(env, { HOME: PG_USER.home, USER: 'postgres', LOGNAME: 'postgres' });
  return { ...env, ...extra };
}

// ---------------------------------------------------------------------------------------------
// running commands

/**
 * Runs argv as the postgres user; resolves { wallS, code, stdout, stderr }. Wall time is taken around
 * the child (spawn to exit). Throws on a non-zero exit unless allowFail. `timeBin` (GNU time) adds
 * peak RSS and CPU seconds ({ rssKB, userS, sysS }) through a file in `timeDir`.
 */
export async function run(argv, { env = pgEnv(), cwd = '/', allowFail = false, input, label, timeBin, timeDir } = {}) {
  let full = argv;
  let timeFile = null;
  if (timeBin && timeDir) {
    timeFile = join(timeDir, `time-${process.pid}-${Math.random().toString(36).slice(2)}`);
    full = [timeBin, '-f', '%M %U %S', '-o', timeFile, ...argv];
  }
  const t0 = process.hrtime.bigint();
  const child = spawn(full[0], full.slice(1), { env, cwd, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], ...asPg() });
  const out = [];
  const err = [];
  child.stdout.on('data', (d) => out.push(d));
  child.stderr.on('data', (d) => err.push(d));
  if (input !== undefined) {
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  }
  const code = await new Promise((res, rej) => {
    child.on('error', rej);
    child.on('close', (c, sig) => res(c ?? (sig ? 128 : 1)));
  });
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const r = { wallS, code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), rssKB: null, userS: null, sysS: null };
  if (timeFile) {
    try {
      const [m, u, s] = readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ').map(Number);
      Object.assign(r, { rssKB: m, userS: u, sysS: s });
    } catch {
      /* GNU time did not write (killed child) */
    }
    rmSync(timeFile, { force: true });
  }
  if (code !== 0 && !allowFail) {
    const what = label ?? argv.join(' ');
    const e = new Error(`${what} failed with exit code ${code}:\n${(r.stderr + r.stdout).trim().slice(-4000)}`);
    e.result = r;
    throw e;
  }
  return r;
}

/** Synchronous variant for setup and cleanup (no timing). */
export function runSync(argv, { env = pgEnv(), cwd = '/', allowFail = false, input } = {}) {
  const r = spawnSync(argv[0], argv.slice(1), { env, cwd, encoding: 'utf8', input, maxBuffer: 256 * 1024 * 1024, ...asPg() });
  if ((r.status !== 0 || r.error) && !allowFail) {
    throw new Error(`${argv.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}):\n${`${r.stderr ?? ''}${r.stdout ?? ''}`.trim().slice(-4000)}`);
  }
  return r;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function quantile(sorted, q) {
  if (!sorted.length) return null;
  const i = (sorted.length - 1) * q;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (i - lo);
}

// ---------------------------------------------------------------------------------------------
// load average

export function uptimeLine() {
  const r = spawnSync('uptime', [], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : `load average: ${loadavg().map((x) => x.toFixed(2)).join(', ')}`;
}

/** Waits (up to maxWaitS) for the 1-minute load average to drop to `limit`; returns what happened. */
export async function waitForQuiet(limit, maxWaitS) {
  const t0 = Date.now();
  let l = loadavg()[0];
  if (l <= limit) return { waitedS: 0, load: +l.toFixed(2), quiet: true };
  log(`load average ${l.toFixed(2)} > ${limit}: other work is running; waiting up to ${maxWaitS} s for it to drop`);
  while (l > limit && Date.now() - t0 < maxWaitS * 1000) {
    await sleep(10_000);
    l = loadavg()[0];
  }
  const waitedS = Math.round((Date.now() - t0) / 1000);
  if (l > limit) log(`load average still ${l.toFixed(2)} after ${waitedS} s: going on; figures will be noisy (the tools run back to back, so ratios suffer less)`);
  else log(`load average ${l.toFixed(2)} after ${waitedS} s`);
  return { waitedS, load: +l.toFixed(2), quiet: l <= limit };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/** The newest /usr/lib/postgresql/<v>/bin with initdb (or FERRY_PG_BIN). */
export function pgBinDir() {
  if (process.env.FERRY_PG_BIN) return process.env.FERRY_PG_BIN;
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(base, v, 'bin', 'initdb'))) return join(base, v, 'bin');
  die('PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/ensure-postgres.sh, or set FERRY_PG_BIN)');
}

const running = new Set();

/** Data directories that may hold a running server started by this process (stopped at exit). */
export function trackDataDir(dir) {
  running.add(dir);
}

function postmasterAlive(dir) {
  try {
    const pid = Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (!pid) return false;
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(st.slice(st.lastIndexOf(')') + 2).split(' ')[0]);
  } catch {
    return false;
  }
}

/** Stops the server in `dir` by its data directory (pg_ctl -D, never by process name). */
export function stopDataDirSync(bin, dir, mode = 'fast') {
  if (!postmasterAlive(dir)) {
    running.delete(dir);
    return;
  }
  const r = spawnSync(join(bin, 'pg_ctl'), ['-D', dir, '-m', mode, '-w', '-t', '60', 'stop'], { ...asPg(), env: pgEnv(), cwd: '/', stdio: 'ignore' });
  if (r.status !== 0 && mode !== 'immediate') spawnSync(join(bin, 'pg_ctl'), ['-D', dir, '-m', 'immediate', '-w', '-t', '30', 'stop'], { ...asPg(), env: pgEnv(), cwd: '/', stdio: 'ignore' });
  running.delete(dir);
}

/** Stops every tracked server (exit hook). */
export function stopAllSync(bin) {
  for (const d of [...running]) stopDataDirSync(bin, d, 'immediate');
}

/**
 * A cluster in `dataDir`, listening on a Unix socket only (listen_addresses = ''), socket in
 * `socketDir`, port `port` (only names the socket, so no TCP port can collide).
 */
export class Cluster {
  constructor({ bin, dataDir, socketDir, port, logFile, name }) {
    Object.assign(this, { bin, dataDir, socketDir, port, logFile, name: name ?? dataDir });
  }

  get env() {
    return { PGHOST: this.socketDir, PGPORT: String(this.port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
  }

  initdb(conf) {
    runSync([join(this.bin, 'initdb'), '-D', this.dataDir, '--auth=trust', '-U', 'postgres', '--encoding=UTF8', '--locale=C', '--data-checksums', '--no-sync']);
    this.appendConf(conf);
  }

  appendConf(lines) {
    appendFileSync(join(this.dataDir, 'postgresql.conf'), `\n# bench/pg.mjs\n${lines.join('\n')}\n`);
  }

  start() {
    trackDataDir(this.dataDir);
    const o = `-p ${this.port} -c listen_addresses='' -k ${this.socketDir}`;
    const r = runSync([join(this.bin, 'pg_ctl'), '-D', this.dataDir, '-l', this.logFile, '-w', '-t', '300', '-o', o, 'start'], { allowFail: true });
    if (r.status !== 0) throw new Error(`could not start PostgreSQL in ${this.dataDir}:\n${r.stderr}${r.stdout}\n--- log ---\n${this.logTail()}`);
  }

  stop(mode = 'fast') {
    stopDataDirSync(this.bin, this.dataDir, mode);
  }

  logTail(n = 30) {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-n).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Runs SQL with psql (-At, ON_ERROR_STOP); returns trimmed stdout. */
  async sql(sql, db = 'postgres') {
    const r = await run([join(this.bin, 'psql'), '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-d', db, '-f', '-'], { env: pgEnv(this.env), input: sql, label: `psql on ${this.name}` });
    return r.stdout.trim();
  }

  async pgbench(args) {
    return run([join(this.bin, 'pgbench'), ...args], { env: pgEnv(this.env), label: `pgbench ${args.join(' ')}` });
  }

  /** Forces a WAL switch and waits until pg_stat_archiver shows the closed segment archived. */
  async switchAndWaitArchived(timeoutS = 600) {
    await this.sql("SELECT pg_logical_emit_message(false, 'bench', 'switch')");
    const name = await this.sql('SELECT pg_walfile_name(pg_switch_wal())');
    const t0 = Date.now();
    for (;;) {
      const [last, failed] = (await this.sql("SELECT coalesce(last_archived_wal, '') || '|' || coalesce(last_failed_wal, '') FROM pg_stat_archiver")).split('|');
      if (last && last.slice(0, 24) >= name) return name;
      if (Date.now() - t0 > timeoutS * 1000) throw new Error(`${this.name}: WAL ${name} not archived within ${timeoutS} s (last archived ${last}, last failed ${failed})\n${this.logTail()}`);
      await sleep(200);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// pgBackRest

/** Makes sure `pgbackrest` is installed (Debian's package, when root); returns its version line. */
export function ensurePgbackrest() {
  const ver = () => spawnSync('pgbackrest', ['version'], { encoding: 'utf8' });
  let v = ver();
  if (v.error || v.status !== 0) {
    if (!isRoot()) die('pgbackrest is not installed and this is not root: install it (apt-get install pgbackrest) and run again');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = () => spawnSync('apt-get', ['install', '-y', 'pgbackrest'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    const cand = spawnSync('apt-cache', ['policy', 'pgbackrest'], { encoding: 'utf8' });
    if (!/Candidate:\s+\d/.test(cand.stdout ?? '')) {
      log('pgbackrest not found and no candidate in the apt lists: apt-get update');
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    }
    log('pgbackrest not found: apt-get install -y pgbackrest');
    let r = install();
    if (r.status !== 0) {
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'], env });
      r = install();
    }
    v = ver();
    if (r.status !== 0 || v.error || v.status !== 0) die('could not install pgbackrest with apt-get (see the output above); install it and run again');
  }
  return v.stdout.trim();
}

/** Writes a pgBackRest config file (stanza `bench`). */
export function pgbackrestConf({ repoPath, cluster, logPath, lockPath, cipherPass }) {
  return [
    '[global]',
    `repo1-path=${repoPath}`,
    'repo1-retention-full=99',
    ...(cipherPass ? ['repo1-cipher-type=aes-256-cbc', `repo1-cipher-pass=${cipherPass}`] : []),
    'compress-type=zst',
    'compress-level=3',
    'process-max=2',
    'start-fast=y',
    `log-path=${logPath}`,
    `lock-path=${lockPath}`,
    'log-level-console=warn',
    'log-level-stderr=warn',
    'log-level-file=off',
    '',
    '[bench]',
    `pg1-path=${cluster.dataDir}`,
    `pg1-port=${cluster.port}`,
    `pg1-socket-path=${cluster.socketDir}`,
    'pg1-user=postgres',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// sizes

/** Apparent bytes under dir (`du -sb`); 0 when it does not exist. */
export function du(dir) {
  if (!existsSync(dir)) return 0;
  const r = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`du -sb ${dir}: ${r.stderr}`);
  return Number(r.stdout.split(/\s/)[0]);
}
