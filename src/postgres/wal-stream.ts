/**
 * `wal stream`: WAL over the replication protocol, for an RPO of seconds.
 *
 * Ferry supervises PostgreSQL's own `pg_receivewal` (from the bin directory
 * pgBinDir finds) writing into a local spool directory, and uploads from there
 * with the same `pushWal` as archive_command:
 *
 * - pg_receivewal runs with `--synchronous` (each write fsynced before the server
 *   is told it was flushed) and, normally, a replication slot, so the server keeps
 *   every byte until it is in the spool: the archive never has a gap.
 * - Completed segments (and timeline history files) are pushed as they appear, then
 *   removed from the spool, except the newest completed segment (pg_receivewal
 *   resumes from the newest file it finds). Nothing leaves the spool before it is
 *   durably in the repository, so a repository outage only makes the spool grow.
 * - The segment in progress is pushed as `<name>.partial` every `partialIntervalMs`
 *   when it has grown (a `.partial` object may be replaced only by one that extends
 *   it; see wal.ts). Once the complete segment is stored, the streamed `.partial`
 *   object is deleted if the segment holds all of its bytes.
 * - pg_receivewal runs with `--no-loop`; when it exits, Ferry uploads what is there
 *   and restarts it with exponential backoff (1 s doubling to 30 s; reset after a
 *   minute of running).
 * - Stopping (the signal aborts): SIGINT to pg_receivewal, which flushes and exits;
 *   a last upload pass (completed segments and the final `.partial`); then return.
 *   With `untilLsn` pg_receivewal stops by itself at that LSN (`--endpos`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Repository } from '../repo/repository.ts';
import { NotFoundError, errorMessage, PostgresError } from '../util/errors.ts';
import { pgBinDir } from './binaries.ts';
import { contentEnd, covers, pushWal, unsealWal } from './wal.ts';
import { parseLsn, walKey } from './walname.ts';

export interface StreamOptions {
  repo: Repository;
  /** Local directory pg_receivewal writes into (created, mode 0700). */
  dir: string;
  /** Replication slot; strongly recommended (without it the server may recycle WAL not yet received). */
  slot?: string;
  /** Create the slot first when it does not exist. */
  createSlot?: boolean;
  /** libpq connection string; otherwise PGHOST, PGPORT, PGUSER... from the environment. */
  dbname?: string;
  /** Stop once WAL up to this LSN is received and uploaded. */
  untilLsn?: string;
  /** How often the segment in progress is uploaded as a `.partial` object. */
  partialIntervalMs: number;
  /** Stops the stream (SIGTERM/SIGINT in the CLI). */
  signal: AbortSignal;
  log: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** Directory with pg_receivewal; default pgBinDir(). */
  binDir?: string;
}

export interface StreamStats {
  segments: number;
  partials: number;
  bytes: number;
  restarts: number;
  /** Last segment (or history file) stored. */
  lastSegment?: string;
}

const SEGMENT = /^[0-9A-F]{24}$/;
const PARTIAL = /^[0-9A-F]{24}\.partial$/;
const HISTORY = /^[0-9A-F]{8}\.history$/;

function connArgs(o: StreamOptions): string[] {
  return o.dbname ? ['--dbname', o.dbname] : [];
}

async function runOnce(bin: string, args: string[], env: NodeJS.ProcessEnv | undefined): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(bin, args, { env: env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => reject(new PostgresError(`cannot run ${bin}: ${e.message}`)));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new PostgresError(`pg_receivewal ${args.join(' ')} failed: ${err.trim().split('\n').slice(-2).join(' ')}`))));
  });
}

export async function streamWal(o: StreamOptions): Promise<StreamStats> {
  const bin = join(o.binDir ?? pgBinDir(), 'pg_receivewal');
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  if (o.untilLsn) parseLsn(o.untilLsn);
  const stats: StreamStats = { segments: 0, partials: 0, bytes: 0, restarts: 0 };
  if (o.createSlot) {
    if (!o.slot) throw new PostgresError('--create-slot needs a slot name');
    await runOnce(bin, ['--create-slot', '--if-not-exists', '--slot', o.slot, ...connArgs(o)], o.env);
    o.log(`replication slot ${o.slot} ready`);
  }
  if (!o.slot) o.log('warning: streaming without a replication slot: the server may remove WAL before it is received (use --slot, --create-slot)');

  const uploader = new Uploader(o, stats);
  let backoff = 1000;
  let child: ChildProcess | undefined;
  let reachedEnd = false;
  const onAbort = () => child?.kill('SIGINT');
  o.signal.addEventListener('abort', onAbort);
  try {
    while (!o.signal.aborted && !reachedEnd) {
      const args = ['--directory', o.dir, '--no-loop', '--synchronous', '--status-interval', '1', '--verbose', ...connArgs(o)];
      if (o.slot) args.push('--slot', o.slot);
      if (o.untilLsn) args.push('--endpos', o.untilLsn);
      const started = Date.now();
      child = spawn(bin, args, { env: o.env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'] });
      let lastErr = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        for (const line of d.split('\n').filter(Boolean)) {
          lastErr = line;
          o.log(line);
        }
      });
      const exited = new Promise<number | null>((resolve) => {
        child!.on('error', (e) => {
          lastErr = e.message;
          resolve(-1);
        });
        child!.on('close', (code) => resolve(code));
      });
      // Upload while pg_receivewal runs.
      let running = true;
      const loop = (async () => {
        while (running) {
          await uploader.pass(false);
          await Promise.race([exited, sleep(500)]);
        }
      })();
      const code = await exited;
      running = false;
      await loop;
      child = undefined;
      reachedEnd = code === 0 && !!o.untilLsn;
      // Before returning, a failed upload is an error (exit 1, the files stay in the spool);
      // before a restart it is only logged.
      const last = o.signal.aborted || reachedEnd;
      await uploader.pass(true, last);
      if (last) break;
      if (Date.now() - started > 60_000) backoff = 1000;
      stats.restarts++;
      o.log(`pg_receivewal exited (${code === -1 ? lastErr : `code ${code}`}); restarting in ${backoff / 1000} s`);
      await sleep(backoff, undefined, { signal: o.signal }).catch(() => undefined);
      backoff = Math.min(backoff * 2, 30_000);
    }
  } finally {
    o.signal.removeEventListener('abort', onAbort);
    if (child) child.kill('SIGKILL');
  }
  return stats;
}

class Uploader {
  private lastPartial?: { name: string; end: number; mtimeMs: number; at: number };
  /** Complete segments stored by this process (so a re-scan does not push them again). */
  private readonly stored = new Set<string>();
  private failingSince?: number;
  private lastErrorLog = 0;

  constructor(
    private readonly o: StreamOptions,
    private readonly stats: StreamStats,
  ) {}

  /**
   * Uploads what is ready; with `final`, also the current `.partial` regardless of the
   * interval. Failures are logged (again every minute while they last) and retried by
   * the next pass, unless `throwErrors`.
   */
  async pass(final: boolean, throwErrors = false): Promise<void> {
    try {
      await this.passInner(final);
      if (this.failingSince !== undefined) this.o.log('uploads to the repository work again');
      this.failingSince = undefined;
    } catch (e) {
      // Keep going: the files stay in the spool and the next pass tries again.
      const now = Date.now();
      if (this.failingSince === undefined || now - this.lastErrorLog >= 60_000) {
        this.o.log(`error: upload failed, will retry: ${errorMessage(e)}`);
        this.lastErrorLog = now;
      }
      this.failingSince ??= now;
      if (throwErrors) throw e;
    }
  }

  private async passInner(final: boolean): Promise<void> {
    const o = this.o;
    const names = (await readdir(o.dir)).sort();
    const complete = names.filter((n) => SEGMENT.test(n) || HISTORY.test(n));
    complete.sort((a, b) => (HISTORY.test(a) ? 0 : 1) - (HISTORY.test(b) ? 0 : 1) || (a < b ? -1 : 1));
    for (const name of complete) {
      if (this.stored.has(name)) continue;
      const data = await readFile(join(o.dir, name));
      const r = await pushWal(o.repo, name, data, { where: join(o.dir, name) });
      this.stored.add(name);
      this.stats.segments++;
      this.stats.bytes += data.length;
      this.stats.lastSegment = name;
      if (r.outcome === 'duplicate') o.log(`${name} was already in the repository with the same content`);
      if (SEGMENT.test(name)) await this.dropCoveredPartial(name, data);
    }
    // Keep the newest complete segment: pg_receivewal resumes from the newest file in its directory.
    const segs = complete.filter((n) => SEGMENT.test(n));
    for (const name of segs.slice(0, -1)) {
      if (this.stored.has(name)) {
        await unlink(join(o.dir, name)).catch(() => undefined);
        this.stored.delete(name);
      }
    }
    const partial = names.filter((n) => PARTIAL.test(n)).at(-1);
    if (partial) await this.pushPartial(partial, final);
  }

  private async pushPartial(name: string, final: boolean): Promise<void> {
    const o = this.o;
    const path = join(o.dir, name);
    const st = await stat(path).catch(() => undefined);
    if (!st) return;
    const last = this.lastPartial;
    const now = Date.now();
    if (last && last.name === name && last.mtimeMs === st.mtimeMs) return; // unchanged
    if (!final && last && now - last.at < o.partialIntervalMs) return;
    const data = await readFile(path).catch(() => undefined);
    if (!data) return; // completed and renamed meanwhile: the next pass pushes the segment
    const end = contentEnd(data);
    if (end === 0 || (last && last.name === name && last.end === end)) {
      this.lastPartial = { name, end, mtimeMs: st.mtimeMs, at: last?.at ?? 0 };
      return;
    }
    const r = await pushWal(o.repo, name, data, { where: path });
    this.lastPartial = { name, end, mtimeMs: st.mtimeMs, at: now };
    if (r.outcome === 'stored' || r.outcome === 'replaced') this.stats.partials++;
  }

  /** Deletes the streamed `<name>.partial` object once the complete segment holds every byte of it. */
  private async dropCoveredPartial(name: string, full: Buffer): Promise<void> {
    const pname = `${name}.partial`;
    const key = walKey(pname);
    const storage = this.o.repo.storage;
    let raw: Buffer;
    try {
      raw = await storage.get(key);
    } catch (e) {
      if (e instanceof NotFoundError) return;
      throw e;
    }
    const stored = await unsealWal(this.o.repo.key, pname, raw, `stored WAL file ${key}`);
    if (covers(full, stored)) await storage.delete(key);
    else this.o.log(`warning: ${pname} in the repository holds bytes that ${name} does not; keeping it`);
  }
}
