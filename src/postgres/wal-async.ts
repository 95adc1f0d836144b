/**
 * Asynchronous WAL archiving and restore for high WAL rates, keeping durability
 * rule 1. Everything goes through a local spool directory (mode 0700):
 *
 *   <spool>/push/queue/<name>    archive_command's request (JSON: absolute path, repository URL)
 *   <spool>/push/done/<name>     written by the push worker once <name> is durably stored (JSON:
 *                                 the file's identity dev:ino:size:mtime, repository URL, outcome)
 *   <spool>/push/error/<name>    written by the push worker when pushing <name> failed
 *   <spool>/push/worker.pid      the one push worker of this spool (created O_EXCL)
 *   <spool>/fetch/want           the last name restore_command asked for (JSON)
 *   <spool>/fetch/wal/<name>     segments prefetched, authenticated, complete (temp + rename)
 *   <spool>/fetch/worker.pid     the one fetch worker of this spool
 *   <spool>/fetch/repo           the repository URL it fetches from (files are served only for it)
 *   <spool>/*.log                the workers' logs
 *
 * Push (`wal push --async PATH`, run by archive_command for segment N):
 *   1. done/N exists and names the same file (identity) → remove it, exit 0. This is
 *      the common case at high rates: no repository access at all. bin/ferry-wal-push
 *      does this step in the shell (no Node start-up) and runs `wal push --async`
 *      otherwise; it relies on `doneMarkerText` and `defaultSpool` as written here.
 *   2. Otherwise write queue/N, start the worker if none runs, and wait for done/N
 *      (exit 0) or error/N (exit 1 with its message), or time out (exit 1; PostgreSQL
 *      retries). The segment stays in pg_wal until archive_command returns 0, so the
 *      spool never holds the only copy of anything. bin/ferry-wal-push does this step
 *      in the shell too while a worker runs (it writes queue/N as `QueueRequest` JSON
 *      and polls for done/N), and leaves starting a worker and every error to Node.
 *   The worker pushes queued names and, ahead of PostgreSQL, every segment with an
 *   `archive_status/*.ready` file, several in parallel over one opened repository,
 *   with the same `pushWal` as the synchronous path; it writes done/N only after
 *   `pushWal` resolved (stored durably, length checked). It exits after a while
 *   with nothing to do and is started again on demand.
 *
 * Fetch (`wal fetch --async NAME DEST`, run by restore_command):
 *   1. fetch/wal/NAME exists → rename it to DEST (a local rename), exit 0. While the worker
 *      runs, bin/ferry-wal-fetch does this step in the shell (a hard link, or a copy renamed
 *      into place), checking fetch/repo and fetch/worker.pid and writing fetch/want as
 *      `Want` JSON itself; it relies on `defaultSpool` and the layout as written here.
 *   2. Otherwise fetch NAME directly, as the synchronous path does.
 *   Either way, record NAME in fetch/want and make sure a fetch worker runs; it keeps
 *   the next K segments of NAME's timeline in fetch/wal/ and removes the rest.
 *   A name missing from the repository is never answered from the spool (the spool
 *   holds only names fetched from the repository), so the end of recovery still
 *   sees "not found". The fetch worker empties fetch/wal/ when it starts and stops.
 *
 * Identity (dev, inode, size, mtime) ties a done marker to the exact file the worker
 * read: PostgreSQL recycles segment files by renaming, so a stale marker never
 * answers for a different file. The repository URL ties it to the repository: a
 * request for another repository (a changed archive_command) makes the worker
 * refuse it and stop, and the retry starts a worker for the new repository.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, watch, writeFileSync, writeSync, type FSWatcher } from 'node:fs';
import { copyFile, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Repository } from '../repo/repository.ts';
import { errorMessage, FerryError, StorageError } from '../util/errors.ts';
import { fetchWalTo, pushWalFile, WalMissingError, type PushResult } from './wal.ts';
import { parseWalName, segmentName } from './walname.ts';

export interface SpoolLayout {
  root: string;
  pushDir: string;
  queue: string;
  done: string;
  error: string;
  pushPid: string;
  fetchDir: string;
  want: string;
  fetched: string;
  fetchPid: string;
  /** Repository URL the fetch worker serves (prefetched files are used only for it). */
  fetchRepo: string;
}

export function spoolLayout(root: string): SpoolLayout {
  const pushDir = join(root, 'push');
  const fetchDir = join(root, 'fetch');
  return {
    root,
    pushDir,
    queue: join(pushDir, 'queue'),
    done: join(pushDir, 'done'),
    error: join(pushDir, 'error'),
    pushPid: join(pushDir, 'worker.pid'),
    fetchDir,
    want: join(fetchDir, 'want'),
    fetched: join(fetchDir, 'wal'),
    fetchPid: join(fetchDir, 'worker.pid'),
    fetchRepo: join(fetchDir, 'repo'),
  };
}

/** A spool per repository and cluster when none is configured: under the temp dir, private to this OS user. */
export function defaultSpool(repoUrl: string, clusterDir: string): string {
  const h = createHash('sha256').update(`${repoUrl}\0${clusterDir}`).digest('hex').slice(0, 12);
  const uid = process.getuid?.() ?? 0;
  return join(tmpdir(), `ferry-spool-${uid}-${h}`);
}

function ensureDirs(...dirs: string[]): void {
  for (const d of dirs) mkdirSync(d, { recursive: true, mode: 0o700 });
}

type Errno = NodeJS.ErrnoException;

/** dev:ino:size:mtimeNs of a file, or undefined when it is gone. */
export async function fileIdentity(path: string): Promise<string | undefined> {
  try {
    const s = await stat(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}`;
  } catch (e) {
    if ((e as Errno).code === 'ENOENT') return undefined;
    throw e;
  }
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as Errno).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Small spool files: written whole to a temp name, then renamed into place. */
async function writeMarker(path: string, text: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, path);
}

async function removeFile(path: string): Promise<void> {
  await unlink(path).catch((e: Errno) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

// ---- the worker pid file ------------------------------------------------------------

function pidAlive(pid: number, marker: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as Errno).code !== 'EPERM') return false;
  }
  // A recycled pid belongs to some other program: check it is still our worker.
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return !existsSync('/proc/self/cmdline'); // no /proc: trust kill(0)
  }
}

/** The pid of the live worker that owns `pidFile`, if one does. */
export function runningWorkerPid(pidFile: string, marker: string): number | undefined {
  const text = (() => {
    try {
      return readFileSync(pidFile, 'utf8');
    } catch {
      return undefined;
    }
  })();
  const pid = Number(text?.trim());
  return Number.isInteger(pid) && pid > 0 && pidAlive(pid, marker) ? pid : undefined;
}

/** Whether a live worker owns `pidFile`. */
export function workerRunning(pidFile: string, marker: string): boolean {
  return runningWorkerPid(pidFile, marker) !== undefined;
}

/**
 * Stops the worker that owns `pidFile`: SIGTERM (it finishes what is in flight and cleans its
 * spool up), then SIGKILL if it is still there after `timeoutMs`. Returns whether one ran.
 */
export async function stopWorker(pidFile: string, marker: string, timeoutMs = 10_000): Promise<boolean> {
  const pid = runningWorkerPid(pidFile, marker);
  if (pid === undefined) return false;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return true; // gone meanwhile
  }
  if (!(await waitWorkerGone(pidFile, marker, timeoutMs))) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
  }
  return true;
}

/**
 * Takes the worker pid file (created exclusively, never empty). A file left by a dead worker is removed
 * first. Returns a release function, or undefined when another worker runs.
 */
export function takePidFile(pidFile: string, marker: string): (() => void) | undefined {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      // Written whole under a temp name, then linked into place (link fails if the name exists):
      // a created-then-written pid file is empty for a moment, and a worker starting in that
      // moment took the empty file for a dead worker's, removed it and ran as a second worker.
      const tmp = `${pidFile}.${process.pid}.tmp`;
      const text = `${process.pid}\n`;
      writeFileSync(tmp, text, { mode: 0o600 });
      try {
        linkSync(tmp, pidFile);
      } catch (e) {
        const code = (e as Errno).code;
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
        // A filesystem without hard links: create it exclusively (the empty moment stays there).
        writeFileSync(pidFile, text, { mode: 0o600, flag: 'wx' });
      } finally {
        unlinkSync(tmp);
      }
      return () => {
        try {
          if (readFileSync(pidFile, 'utf8').trim() === String(process.pid)) {
            // Synchronous on purpose: release runs from exit paths too.
            unlinkSync(pidFile);
          }
        } catch {
          // gone already
        }
      };
    } catch (e) {
      if ((e as Errno).code !== 'EEXIST') throw e;
      if (workerRunning(pidFile, marker)) return undefined;
      try {
        unlinkSync(pidFile);
      } catch {
        // raced with another starter; try once more
      }
    }
  }
  return undefined;
}

/** How to start a worker: the ferry command line (node, script) and its arguments. */
export interface WorkerLauncher {
  /** e.g. [process.execPath, '/usr/lib/ferry/bin/ferry'] */
  command: string[];
  /** Arguments after the command, e.g. ['wal', 'push-worker', '--spool', dir, ...] */
  args: string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
}

/** Starts a detached worker with its output appended to its log file. */
export function launchWorker(l: WorkerLauncher): void {
  ensureDirs(dirname(l.logFile));
  const fd = openSync(l.logFile, 'a', 0o600);
  try {
    const child = spawn(l.command[0], [...l.command.slice(1), ...l.args], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: l.env ?? process.env,
      // The caller's directory (the data directory for archive_command): relative paths keep their meaning.
      cwd: process.cwd(),
    });
    child.unref();
  } finally {
    closeSync(fd);
  }
}

/**
 * Starts a worker unless one runs or one was started in the last few seconds (a
 * starting worker has not written its pid file yet; calls come every few ms).
 */
export function ensureWorker(pidFile: string, marker: string, l: WorkerLauncher, graceMs = 5000): void {
  if (workerRunning(pidFile, marker)) return;
  const stamp = `${pidFile}.launched`;
  try {
    const at = Number(readFileSync(stamp, 'utf8'));
    if (Date.now() - at < graceMs) return;
  } catch {
    // never launched
  }
  ensureDirs(dirname(stamp));
  const fd = openSync(stamp, 'w', 0o600);
  writeSync(fd, String(Date.now()));
  closeSync(fd);
  launchWorker(l);
}

/**
 * Watches directories for as long as it is open. `next(ms)` resolves at the first change
 * since the previous `next` resolved, or after `ms`. A change that lands while the caller
 * is scanning (between two waits) makes the next wait return at once, so a request
 * written just after a scan is seen now, not at the timeout: a watcher set up only for
 * the wait missed those, and each miss cost a whole timeout (200 ms per segment here).
 */
export class DirWatch {
  private changed = false;
  private wake: (() => void) | undefined;
  private pending: Promise<void> | undefined;
  private readonly watchers: FSWatcher[] = [];

  constructor(dirs: string[]) {
    for (const d of dirs) {
      try {
        this.watchers.push(watch(d, { persistent: false }, () => this.poke()));
      } catch {
        // the directory may not exist (yet): the timeout covers it
      }
    }
  }

  private poke(): void {
    this.changed = true;
    this.wake?.();
  }

  /** A wait still pending when the caller raced it against something else is shared, not replaced. */
  next(ms: number): Promise<void> {
    if (this.changed && !this.pending) {
      this.changed = false;
      return Promise.resolve();
    }
    this.pending ??= new Promise<void>((resolve) => {
      const t = setTimeout(() => this.wake?.(), ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        this.pending = undefined;
        this.changed = false;
        resolve();
      };
    });
    return this.pending;
  }

  close(): void {
    for (const w of this.watchers) w.close();
    this.wake?.();
  }
}

// ---- push: the archive_command side ------------------------------------------------------

export interface DoneMarker {
  identity: string;
  /** Repository URL the file went to. */
  repo: string;
  outcome: PushResult['outcome'];
  storedBytes: number;
  at: number;
}

/**
 * The text of done/<name>: one line of JSON that starts `{"identity":"…","repo":…,` in
 * that order. bin/ferry-wal-push (archive_command in the shell) matches exactly that
 * start, so the order of these two fields is part of the spool's format.
 */
export function doneMarkerText(m: DoneMarker): string {
  return JSON.stringify({ identity: m.identity, repo: m.repo, outcome: m.outcome, storedBytes: m.storedBytes, at: m.at });
}

export interface AsyncPushOptions {
  spool: string;
  /** Absolute path of the WAL file PostgreSQL hands over. */
  path: string;
  /** The repository this file must go to; a worker serving another one refuses the request. */
  repoUrl: string;
  /** Give up (exit 1, PostgreSQL retries) after this long. */
  timeoutMs: number;
  /** Starts a push worker for this spool and the file's directory. */
  startWorker: () => void;
  now?: () => number;
}

/** Content of queue/<name>. */
export interface QueueRequest {
  path: string;
  repo: string;
}

export const PUSH_WORKER_MARKER = 'push-worker';
export const FETCH_WORKER_MARKER = 'fetch-worker';

/** archive_command in async mode: resolves once the file is durably stored; throws otherwise. */
export async function pushAsync(o: AsyncPushOptions): Promise<DoneMarker> {
  const name = basename(o.path);
  parseWalName(name);
  const L = spoolLayout(o.spool);
  ensureDirs(L.queue, L.done, L.error);
  const now = o.now ?? Date.now;
  const identity = await fileIdentity(o.path);
  if (!identity) throw new StorageError(`WAL file ${o.path} does not exist`);
  const doneFile = join(L.done, name);
  const errorFile = join(L.error, name);

  const take = async (): Promise<DoneMarker | undefined> => {
    const text = await readText(doneFile);
    if (text === undefined) return undefined;
    let m: DoneMarker | undefined;
    try {
      m = JSON.parse(text) as DoneMarker;
    } catch {
      m = undefined;
    }
    if (!m || m.identity !== identity || m.repo !== o.repoUrl) {
      await removeFile(doneFile);
      return undefined;
    }
    // The request before the marker: a worker that answers it twice sees it gone and withdraws the second marker.
    await removeFile(join(L.queue, name));
    await removeFile(doneFile);
    return m;
  };

  const fast = await take();
  if (fast) return fast;
  await removeFile(errorFile); // an old failure: try again
  const request = JSON.stringify({ path: o.path, repo: o.repoUrl } satisfies QueueRequest);
  const answers = new DirWatch([L.done, L.error]);
  try {
    await writeMarker(join(L.queue, name), request);
    return await awaitAnswer();
  } finally {
    answers.close();
  }

  async function awaitAnswer(): Promise<DoneMarker> {
    const started = now();
    let spawnedAt = -Infinity;
    let lastCheck = -Infinity;
    for (;;) {
      const t = now();
      if (t - lastCheck >= 1000) {
        lastCheck = t;
        if (!workerRunning(L.pushPid, PUSH_WORKER_MARKER) && t - spawnedAt > 3000) {
          o.startWorker();
          spawnedAt = t;
        }
      }
      const m = await take();
      if (m) return m;
      const err = await readText(errorFile);
      if (err !== undefined) {
        await removeFile(errorFile);
        const [message, hint] = err.split('\nhint: ');
        throw new FerryError(message.trim(), hint ? { hint: hint.trim() } : {});
      }
      if (t - started > o.timeoutMs) {
        throw new FerryError(`timed out after ${Math.round(o.timeoutMs / 1000)} s waiting for the push worker to store ${name}`, {
          hint: `see ${join(o.spool, 'push-worker.log')}; PostgreSQL will retry`,
        });
      }
      // Re-queue if the worker dropped the request (a worker that exited mid-way).
      if (!existsSync(join(L.queue, name)) && !existsSync(doneFile) && !existsSync(errorFile)) await writeMarker(join(L.queue, name), request);
      await answers.next(100);
    }
  }
}

// ---- push: the worker ---------------------------------------------------------------

export interface PushWorkerOptions {
  spool: string;
  /** The repository URL this worker pushes to (requests for another are refused). */
  repoUrl: string;
  /** pg_wal of the cluster, for reading archive_status/*.ready ahead of PostgreSQL. */
  walDir?: string;
  /** Pushes in flight at once. */
  parallel: number;
  /** Exit after this long with nothing to do. */
  idleExitMs: number;
  log: (line: string) => void;
  signal?: AbortSignal;
}

export interface PushWorkerStats {
  pushed: number;
  bytes: number;
  storedBytes: number;
  failed: number;
}

interface Candidate {
  name: string;
  path: string;
  queued: boolean;
}

function walOrder(a: string, b: string): number {
  // Timeline history files first: a new timeline's segments are useless without them.
  const ha = a.endsWith('.history') ? 0 : 1;
  const hb = b.endsWith('.history') ? 0 : 1;
  return ha - hb || (a < b ? -1 : a > b ? 1 : 0);
}

async function listNames(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => !n.startsWith('.'));
  } catch (e) {
    if ((e as Errno).code === 'ENOENT') return [];
    throw e;
  }
}

/**
 * Answers every queued request with `error` (a worker that cannot start, e.g. a wrong
 * key, must not leave archive_command waiting for its timeout).
 */
export async function failQueued(spool: string, error: unknown): Promise<void> {
  const L = spoolLayout(spool);
  const hint = error instanceof FerryError && error.hint ? `\nhint: ${error.hint}` : '';
  for (const name of await listNames(L.queue)) {
    await writeMarker(join(L.error, name), `${errorMessage(error)}${hint}`).catch(() => undefined);
    await removeFile(join(L.queue, name)).catch(() => undefined);
  }
}

/** Runs the push worker until idle for `idleExitMs` (or aborted). Returns undefined when another worker owns the spool. */
export async function runPushWorker(repo: Repository, o: PushWorkerOptions): Promise<PushWorkerStats | undefined> {
  const L = spoolLayout(o.spool);
  ensureDirs(L.queue, L.done, L.error);
  const release = takePidFile(L.pushPid, PUSH_WORKER_MARKER);
  if (!release) return undefined;
  const stats: PushWorkerStats = { pushed: 0, bytes: 0, storedBytes: 0, failed: 0 };
  /** name -> identity of the file pushed, so a file seen again in archive_status is not pushed twice. */
  const pushed = new Map<string, string>();
  const inflight = new Map<string, Promise<void>>();
  let lastWork = Date.now();
  let lastCleanup = 0;
  let retiring = false;
  const statusDir = o.walDir ? join(o.walDir, 'archive_status') : undefined;
  const requests = new DirWatch([L.queue, ...(statusDir ? [statusDir] : [])]);

  const pushOne = async (c: Candidate): Promise<void> => {
    const doneFile = join(L.done, c.name);
    try {
      const before = await fileIdentity(c.path);
      if (!before) {
        // Gone: PostgreSQL archived it some other way or removed it; a queued request is stale.
        if (c.queued) await writeMarker(join(L.error, c.name), `WAL file ${c.path} disappeared before it was pushed`);
        return;
      }
      if (pushed.get(c.name) === before) {
        await writeMarker(doneFile, doneMarkerText({ identity: before, repo: o.repoUrl, outcome: 'duplicate', storedBytes: 0, at: Date.now() }));
        // A request answered meanwhile by the first marker (the waiter removes its request, then
        // the marker) is gone by now: nothing would take this second one.
        const answered = c.queued && !existsSync(join(L.queue, c.name));
        if (answered) await removeFile(doneFile);
        o.log(`${c.name}: requested again, pushed earlier by this worker${answered ? '; the request was answered meanwhile' : ''}`);
        return;
      }
      // The pushes in flight share this one JavaScript thread: zstd compresses each on two
      // threads of its own, so the reads, the sealing and the other pushes go on meanwhile. A
      // catch-up of 64 segments of table WAL here: 7.8-8.4 s with zstd on this thread, 4.6-6.8 s
      // so (4 threads: 7.1-9.3 s).
      const r = await pushWalFile(repo, c.path, { where: c.path }); // zstd on PUSH_ZSTD_THREADS
      // Changed while it was read (PostgreSQL never changes a ready file): no marker, next round.
      if ((await fileIdentity(c.path)) !== before) return;
      pushed.set(c.name, before);
      stats.pushed++;
      stats.bytes += r.bytes;
      stats.storedBytes += r.outcome === 'stored' || r.outcome === 'replaced' ? r.storedBytes : 0;
      // Only what is unusual is logged: a line per segment would grow this log (which nothing
      // rotates) by about 170 MB a day at a sustained 20 segments a second.
      if (r.outcome !== 'stored') o.log(`${c.name}: ${r.outcome === 'duplicate' ? 'already in the repository with the same content' : r.outcome} (${c.queued ? 'requested' : 'ready, ahead of archive_command'})`);
      await writeMarker(doneFile, doneMarkerText({ identity: before, repo: o.repoUrl, outcome: r.outcome, storedBytes: r.storedBytes, at: Date.now() }));
    } catch (e) {
      stats.failed++;
      const hint = e instanceof FerryError && e.hint ? `\nhint: ${e.hint}` : '';
      o.log(`${c.name}: push failed: ${errorMessage(e)}`);
      await writeMarker(join(L.error, c.name), `${errorMessage(e)}${hint}`).catch(() => undefined);
    } finally {
      if (c.queued) await removeFile(join(L.queue, c.name)).catch(() => undefined);
    }
  };

  const candidates = async (): Promise<Candidate[]> => {
    const byName = new Map<string, Candidate>();
    const errors = new Set(await listNames(L.error));
    for (const name of await listNames(L.queue)) {
      const text = await readText(join(L.queue, name));
      let req: QueueRequest | undefined;
      try {
        req = text ? (JSON.parse(text) as QueueRequest) : undefined;
      } catch {
        req = undefined;
      }
      if (!req?.path || inflight.has(name)) continue;
      if (req.repo !== o.repoUrl) {
        // The repository changed (or two share a spool): stop, so the next request starts a worker for it.
        retiring = true;
        await writeMarker(
          join(L.error, name),
          `the push worker of spool ${o.spool} was archiving into ${o.repoUrl}, not ${req.repo}; it is stopping, try again\nhint: if two repositories share this spool, give each its own --spool directory`,
        );
        await removeFile(join(L.queue, name));
        continue;
      }
      byName.set(name, { name, path: req.path, queued: true });
    }
    if (statusDir && o.walDir) {
      for (const f of await listNames(statusDir)) {
        if (!f.endsWith('.ready')) continue;
        const name = f.slice(0, -'.ready'.length);
        if (!byName.has(name)) byName.set(name, { name, path: join(o.walDir, name), queued: false });
      }
    }
    // Listed last, with no wait between it and the checks below: a push that ended before this
    // listing has its marker here, and one that has not is still in flight.
    const done = new Set(await listNames(L.done));
    const out: Candidate[] = [];
    for (const c of byName.values()) {
      if (inflight.has(c.name)) continue;
      if (!c.queued && (errors.has(c.name) || done.has(c.name) || pushed.has(c.name))) continue;
      if (c.queued && done.has(c.name)) continue; // answered; archive_command will take it
      try {
        parseWalName(c.name);
      } catch {
        continue;
      }
      out.push(c);
    }
    return out.sort((a, b) => walOrder(a.name, b.name));
  };

  const cleanup = async (): Promise<void> => {
    const ready = new Set(statusDir ? (await listNames(statusDir)).filter((f) => f.endsWith('.ready')).map((f) => f.slice(0, -6)) : []);
    const t = Date.now();
    for (const [dir, maxAge] of [
      [L.done, 60_000],
      [L.error, 600_000],
    ] as const) {
      for (const name of await listNames(dir)) {
        if (ready.has(name)) continue;
        const s = await stat(join(dir, name)).catch(() => undefined);
        if (s && t - s.mtimeMs > maxAge) await removeFile(join(dir, name));
      }
    }
    for (const name of pushed.keys()) if (!ready.has(name) && !inflight.has(name)) pushed.delete(name);
  };

  try {
    o.log(`push worker ${process.pid} started (spool ${o.spool}${o.walDir ? `, reading ${statusDir}` : ''}, ${o.parallel} in parallel)`);
    while (!o.signal?.aborted) {
      const free = o.parallel - inflight.size;
      const found = free > 0 ? await candidates() : [];
      if (retiring) break;
      const todo = found.slice(0, free);
      for (const c of todo) {
        const p = pushOne(c).finally(() => inflight.delete(c.name));
        inflight.set(c.name, p);
      }
      if (todo.length || inflight.size) lastWork = Date.now();
      if (Date.now() - lastCleanup > 10_000) {
        lastCleanup = Date.now();
        await cleanup().catch((e: unknown) => o.log(`spool cleanup failed: ${errorMessage(e)}`));
      }
      if (inflight.size >= o.parallel) {
        await Promise.race(inflight.values());
        continue;
      }
      if (!todo.length) {
        if (!inflight.size && Date.now() - lastWork > o.idleExitMs) break;
        await Promise.race([...inflight.values(), requests.next(200)]);
      }
    }
    await Promise.all(inflight.values());
    o.log(`push worker ${process.pid} exiting: pushed ${stats.pushed} (${stats.bytes} bytes, ${stats.storedBytes} stored), ${stats.failed} failed`);
    return stats;
  } finally {
    requests.close();
    release();
  }
}

// ---- fetch: the restore_command side ---------------------------------------------------------

export interface Want {
  name: string;
  segmentSize: number;
  repo: string;
  at: number;
}

/** Moves a prefetched file to `dest` when the spool has `name`. Returns whether it did. */
export async function takePrefetched(spool: string, name: string, dest: string, repoUrl: string): Promise<{ bytes: number } | undefined> {
  const L = spoolLayout(spool);
  if ((await readText(L.fetchRepo)) !== repoUrl) return undefined;
  const src = join(L.fetched, name);
  let size: number;
  try {
    size = (await stat(src)).size;
  } catch {
    return undefined;
  }
  try {
    await rename(src, dest);
  } catch (e) {
    const code = (e as Errno).code;
    if (code === 'ENOENT') return undefined; // the worker removed it meanwhile
    if (code !== 'EXDEV') throw new StorageError(`cannot move ${src} to ${dest}: ${errorMessage(e)}`);
    // Spool on another filesystem: copy to a temp name beside dest, then rename.
    const tmp = join(dirname(dest), `.${basename(dest)}.ferry-copy.tmp`);
    await copyFile(src, tmp);
    await rename(tmp, dest);
    await removeFile(src);
  }
  return { bytes: size };
}

/** Records the name restore_command just served, for the fetch worker to read ahead of it. */
export async function recordWant(spool: string, name: string, segmentSize: number, repoUrl: string): Promise<void> {
  const L = spoolLayout(spool);
  ensureDirs(L.fetched);
  await writeMarker(L.want, JSON.stringify({ name, segmentSize, repo: repoUrl, at: Date.now() } satisfies Want));
}

// ---- fetch: the worker ------------------------------------------------------------------------

export interface FetchWorkerOptions {
  spool: string;
  /** The repository URL this worker fetches from; a request for another one stops it. */
  repoUrl: string;
  /** Segments to keep ready after the last one asked for. */
  ahead: number;
  parallel: number;
  idleExitMs: number;
  log: (line: string) => void;
  signal?: AbortSignal;
}

/** The `ahead` segment names after `want` on its timeline. */
export function prefetchWindow(want: Want, ahead: number): string[] {
  const w = parseWalName(want.name, want.segmentSize);
  if (w.kind !== 'segment' || w.segno === undefined) return [];
  const out: string[] = [];
  for (let i = 1n; i <= BigInt(ahead); i++) out.push(segmentName(w.timeline, w.segno + i, want.segmentSize));
  return out;
}

async function wipe(dir: string): Promise<void> {
  for (const n of await listNames(dir).catch(() => [] as string[])) await removeFile(join(dir, n)).catch(() => undefined);
  for (const n of (await readdir(dir).catch(() => [] as string[])).filter((x) => x.startsWith('.'))) await removeFile(join(dir, n)).catch(() => undefined);
}

/** Runs the fetch worker until nothing was asked for `idleExitMs`. Returns undefined when another worker owns the spool. */
export async function runFetchWorker(repo: Repository, o: FetchWorkerOptions): Promise<{ fetched: number; served: number } | undefined> {
  const L = spoolLayout(o.spool);
  ensureDirs(L.fetched);
  const release = takePidFile(L.fetchPid, FETCH_WORKER_MARKER);
  if (!release) return undefined;
  let fetched = 0;
  /** Names it fetched that restore_command then asked for (served from the spool, as want shows after). */
  let served = 0;
  /**
   * Names it fetched and has not removed itself. One of these missing from the spool was taken
   * by restore_command, which writes want only after moving the file: not fetched again meanwhile.
   */
  const fetchedNames = new Set<string>();
  const inflight = new Map<string, Promise<void>>();
  /** name -> when it was last found missing (retried after a pause: it may be archived meanwhile). */
  const missingAt = new Map<string, number>();
  let lastWantAt = Date.now();
  let lastWantText = '';
  const asked = new DirWatch([L.fetchDir]);

  const fetchOne = async (name: string): Promise<void> => {
    try {
      await fetchWalTo(repo, name, join(L.fetched, name));
      fetched++;
      fetchedNames.add(name);
      missingAt.delete(name);
    } catch (e) {
      if (e instanceof WalMissingError) missingAt.set(name, Date.now());
      else {
        missingAt.set(name, Date.now());
        o.log(`${name}: prefetch failed: ${errorMessage(e)}`);
      }
    }
  };

  try {
    await wipe(L.fetched);
    await writeMarker(L.fetchRepo, o.repoUrl);
    o.log(`fetch worker ${process.pid} started (spool ${o.spool}, ${o.ahead} ahead, ${o.parallel} in parallel)`);
    while (!o.signal?.aborted) {
      const text = (await readText(L.want)) ?? '';
      if (text !== lastWantText) {
        lastWantText = text;
        lastWantAt = Date.now();
      }
      let want: Want | undefined;
      try {
        want = text ? (JSON.parse(text) as Want) : undefined;
      } catch {
        want = undefined;
      }
      if (want && want.repo !== o.repoUrl) break; // another repository now: the next call starts a worker for it
      if (want && fetchedNames.delete(want.name)) served++;
      const win = want ? prefetchWindow(want, o.ahead) : [];
      const keep = new Set(win);
      for (const n of await listNames(L.fetched)) if (!keep.has(n) && !inflight.has(n)) await removeFile(join(L.fetched, n));
      // Out of the window now, whether removed above or taken by restore_command earlier.
      for (const n of fetchedNames) if (!keep.has(n) && !inflight.has(n)) fetchedNames.delete(n);
      const have = new Set(await listNames(L.fetched));
      const now = Date.now();
      for (const name of win) {
        if (inflight.size >= o.parallel) break;
        if (have.has(name) || inflight.has(name) || fetchedNames.has(name)) continue;
        const m = missingAt.get(name);
        if (m !== undefined && now - m < 1000) continue;
        inflight.set(name, fetchOne(name).finally(() => inflight.delete(name)));
      }
      if (!inflight.size && Date.now() - lastWantAt > o.idleExitMs) break;
      await Promise.race([...inflight.values(), asked.next(200)]);
    }
    await Promise.all(inflight.values());
    o.log(`fetch worker ${process.pid} exiting: prefetched ${fetched} file(s), ${served} of them asked for`);
    return { fetched, served };
  } finally {
    asked.close();
    await removeFile(L.fetchRepo).catch(() => undefined);
    await wipe(L.fetched).catch(() => undefined);
    release();
  }
}

/** For tests and diagnostics: waits until no worker owns `pidFile` (or the timeout passes). */
export async function waitWorkerGone(pidFile: string, marker: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (workerRunning(pidFile, marker)) {
    if (Date.now() > until) return false;
    await sleep(50);
  }
  return true;
}
