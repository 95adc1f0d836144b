/**
 * `pg restore`: a snapshot, or a point in time, into a new data directory.
 *
 *   1. decide (before writing anything): which snapshot serves the target, whether
 *      the target can be reached, whether the directory may be written
 *   2. restore the snapshot's files (tablespaces to their own directories), owned by
 *      the cluster's OS user
 *   3. write recovery settings: recovery.signal, and in postgresql.auto.conf a
 *      restore_command that fetches WAL from this repository, the target, and
 *      promotion at the end
 *   4. with `start`: start the server, wait until it has promoted, and report the
 *      exact point reached (last replayed transaction, LSN, timeline)
 *
 * restore_command is, by default, bin/ferry-wal-fetch (`wal fetch --async`): PostgreSQL
 * replays nothing while restore_command runs, so a Node start per segment (40-60 ms here)
 * adds up over a long recovery. Its fetch worker keeps the next RESTORE_FETCH_AHEAD segments
 * ready in a spool inside the restored pg_wal (RESTORE_SPOOL_DIR), where each is served by a
 * hard link with no Node start. With `start` the worker is stopped and the spool removed once
 * the server has promoted; otherwise the worker exits by itself 30 s after the last request,
 * empties what it prefetched, and removes the spool if recovery has ended. `walFetch: 'sync'`
 * writes the one-process-per-file `ferry wal fetch` instead (no background process).
 */
import { appendFile, chown, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { listAll } from '../storage/types.ts';
import { listSnapshots, resolveSnapshot } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { restoreTree, type RestoreProgress } from '../repo/restore.ts';
import { ConfigError, PostgresError } from '../util/errors.ts';
import { osUser, pgBinDir, runPg } from './binaries.ts';
import type { PgSnapshotMeta } from './meta.ts';
import { chooseSnapshot, pgTargetTime, type Candidate, type RecoveryTarget } from './plan.ts';
import { DEFAULT_PG_ASSET } from './snapshot.ts';
import { connect } from './connect.ts';
import { FETCH_WORKER_MARKER, spoolLayout, stopWorker } from './wal-async.ts';

/**
 * The restored server's fetch spool, relative to its data directory: on the data directory's
 * filesystem (a prefetched segment is served by a hard link), and in pg_wal, where PostgreSQL
 * ignores what is not named like a WAL file and snapshots keep nothing.
 */
export const RESTORE_SPOOL_DIR = join('pg_wal', '.ferry-spool');
/** The fetch spool of a server restored into `targetDir`. */
export function restoreSpool(targetDir: string): string {
  return join(targetDir, RESTORE_SPOOL_DIR);
}
/** Segments the restored server's fetch worker keeps ready ahead of replay (at most 8 x 16 MiB in the spool). */
export const RESTORE_FETCH_AHEAD = 8;

export interface PgRestoreOptions {
  targetDir: string;
  asset?: string;
  snapshot?: string;
  target: RecoveryTarget;
  /** Stop just before the target instead of just after it. */
  exclusive?: boolean;
  delta?: boolean;
  force?: boolean;
  /** OS user to own the restored files (default: postgres when running as root). */
  owner?: string;
  tablespaceMap?: Record<string, string>;
  /** The command that runs Ferry, as PostgreSQL should call it (absolute path). */
  ferryCommand: string;
  /** Environment the restore_command needs (FERRY_REPO, FERRY_KEY_FILE or FERRY_PASSWORD_FILE, FERRY_S3_ENDPOINT). */
  restoreEnv: Record<string, string>;
  /** restore_command: 'async' (default; prefetching, see the top of this file) or 'sync' (one `ferry wal fetch` per file). */
  walFetch?: WalFetchMode;
  start?: boolean;
  port?: number;
  /** Turn archiving off in the restored cluster (e.g. a drill or a scratch copy). */
  noArchive?: boolean;
  /** Called after the recovery settings are written and before the server starts (a scratch copy adjusts its access here). */
  beforeStart?: (targetDir: string) => Promise<void>;
  timeoutMs?: number;
  onProgress?: (p: RestoreProgress) => void;
  onStep?: (s: string) => void;
}

export type WalFetchMode = 'async' | 'sync';

export interface PgRestoreReport {
  snapshot: string;
  /** How the restored server's restore_command fetches WAL. */
  walFetch: WalFetchMode;
  /** With `start` and 'async': segments the fetch worker prefetched, and how many of them recovery asked for. */
  prefetch?: { prefetched: number; served: number };
  targetDir: string;
  target: RecoveryTarget;
  snapshotStopTime: string;
  snapshotStopLsn: string;
  started: boolean;
  port?: number;
  socketDir?: string;
  /** Filled when started: the exact point recovery reached. */
  reached?: {
    lsn: string;
    lastTransactionTime: string | null;
    timeline: number;
    stopLine?: string;
  };
  lastArchivedAt?: string;
  /** For restores to the end of the archive: how much may be lost. */
  dataLossWindow?: string;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The restore_command line for a server restored into `targetDir`. */
export function restoreCommandFor(opts: Pick<PgRestoreOptions, 'ferryCommand' | 'restoreEnv' | 'walFetch'>, targetDir: string): string {
  const env = Object.entries(opts.restoreEnv)
    .map(([k, v]) => `${k}=${shellQuote(v)}`)
    .join(' ');
  const ferry = shellQuote(opts.ferryCommand);
  if (opts.walFetch === 'sync') return `${env} ${ferry} wal fetch "%f" "%p"`;
  // bin/ferry-wal-fetch beside bin/ferry; an installation without it gets the same mode through Node.
  const script = join(dirname(opts.ferryCommand), 'ferry-wal-fetch');
  const entry = existsSync(script) ? shellQuote(script) : `${ferry} wal fetch --async`;
  return `${env} ${entry} "%f" "%p" --spool ${shellQuote(restoreSpool(targetDir))} --ahead ${RESTORE_FETCH_AHEAD}`;
}

/**
 * Stops the fetch worker of a server restored into `targetDir` and removes its spool, keeping
 * the worker's log as `ferry-fetch.log` in the data directory (beside ferry-restore.log).
 * Returns what the worker said it prefetched and how many of those recovery asked for.
 */
export async function stopRestoreFetch(targetDir: string): Promise<{ prefetched: number; served: number } | undefined> {
  await stopWorker(spoolLayout(restoreSpool(targetDir)).fetchPid, FETCH_WORKER_MARKER);
  const log = await retireRestoreSpool(targetDir);
  let prefetched = 0;
  let served = 0;
  let ran = false;
  for (const m of (await readFile(log, 'utf8').catch(() => '')).matchAll(/exiting: prefetched (\d+) file\(s\), (\d+) of them asked for/g)) {
    ran = true;
    prefetched += Number(m[1]);
    served += Number(m[2]);
  }
  return ran ? { prefetched, served } : undefined;
}

/** Removes the restore spool of `targetDir`, keeping the fetch worker's log as ferry-fetch.log there; returns its path. */
async function retireRestoreSpool(targetDir: string): Promise<string> {
  const spool = restoreSpool(targetDir);
  const log = join(targetDir, 'ferry-fetch.log');
  await rename(join(spool, 'fetch-worker.log'), log).catch(() => undefined);
  await rm(spool, { recursive: true, force: true });
  return log;
}

/**
 * Called by a fetch worker that has exited on its own: when `spool` is the restore spool of a
 * data directory whose recovery has ended (PostgreSQL removes recovery.signal when it promotes;
 * a standby keeps standby.signal and still needs the spool), removes it as `--start` would
 * have, keeping the log. Without this a restore run without `--start` left pg_wal/.ferry-spool
 * behind. Returns whether it removed it.
 */
export async function retireRestoreSpoolIfRecovered(spool: string): Promise<boolean> {
  const targetDir = dirname(dirname(spool));
  if (resolve(restoreSpool(targetDir)) !== resolve(spool)) return false;
  if (!existsSync(join(targetDir, 'PG_VERSION'))) return false;
  if (existsSync(join(targetDir, 'recovery.signal')) || existsSync(join(targetDir, 'standby.signal'))) return false;
  await retireRestoreSpool(targetDir);
  return true;
}

function confQuote(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

async function lastArchived(repo: Repository): Promise<number | undefined> {
  let last: number | undefined;
  for await (const o of listAll(repo.storage, 'wal/')) if (!o.key.endsWith('.history') && (last === undefined || o.mtime > last)) last = o.mtime;
  return last;
}

/** The system identifier in a data directory's pg_control (first 8 bytes, little-endian). */
async function systemIdentifierOf(dataDir: string): Promise<string | undefined> {
  try {
    const buf = await readFile(join(dataDir, 'global', 'pg_control'));
    return buf.readBigUInt64LE(0).toString();
  } catch {
    return undefined;
  }
}

export async function restorePg(repo: Repository, opts: PgRestoreOptions): Promise<PgRestoreReport> {
  const step = opts.onStep ?? (() => undefined);
  const targetDir = resolve(opts.targetDir);
  const asset = opts.asset ?? DEFAULT_PG_ASSET;
  repo.startCodec(); // they boot while the snapshot is chosen and the target checked
  // 1. decide
  const all = await listSnapshots(repo, { kind: 'postgres', asset });
  const explicit = opts.snapshot && opts.snapshot !== 'latest' ? (await resolveSnapshot(repo, opts.snapshot, { kind: 'postgres', asset })).id : undefined;
  const candidates: Candidate[] = all.map((s) => ({ id: s.id, meta: s.manifest.meta as unknown as PgSnapshotMeta }));
  const lastAt = await lastArchived(repo);
  const chosen = chooseSnapshot(candidates, opts.target, repo.clock.now(), { lastArchivedAt: lastAt }, explicit);
  const manifest = all.find((s) => s.id === chosen.id)!.manifest;
  const meta = chosen.meta;
  if (opts.delta) {
    const existing = await systemIdentifierOf(targetDir);
    if (existing && existing !== meta.systemIdentifier) {
      throw new ConfigError(`${targetDir} holds a data directory of another database system (${existing}, the snapshot is of ${meta.systemIdentifier})`, {
        hint: 'restore into an empty directory instead',
      });
    }
  }
  if (await stat(join(targetDir, 'postmaster.pid')).catch(() => undefined)) {
    throw new PostgresError(`${targetDir} has a postmaster.pid: a server may be running there`, { hint: 'stop that server first; Ferry never restores over a live database' });
  }
  const ownerName = opts.owner ?? (process.getuid?.() === 0 ? 'postgres' : undefined);
  const owner = ownerName ? osUser(ownerName) : undefined;
  const keyFile = opts.restoreEnv.FERRY_KEY_FILE ?? opts.restoreEnv.FERRY_PASSWORD_FILE;
  if (!keyFile) {
    throw new ConfigError('the restored server needs a key file or password file to fetch WAL, and none is set', {
      hint: 'set FERRY_KEY_FILE (or FERRY_PASSWORD_FILE) to a file the database OS user can read; a passphrase in the environment cannot be handed to restore_command',
    });
  }
  if (owner) {
    const st = await stat(keyFile).catch(() => undefined);
    if (!st) throw new ConfigError(`key file ${keyFile} does not exist`);
    if (st.uid !== owner.uid && owner.uid !== 0) {
      throw new ConfigError(`key file ${keyFile} is not owned by ${ownerName}, so the restored server's restore_command cannot read it`, {
        hint: `chown ${ownerName} ${keyFile} (mode 0600)`,
      });
    }
  }
  const relocate = meta.tablespaces.map((t) => ({ prefix: `pg_tblspc/${t.oid}`, dir: resolve(opts.tablespaceMap?.[String(t.oid)] ?? opts.tablespaceMap?.[t.name] ?? t.location) }));

  // 2. files, then 3. recovery settings, written before the restore's final sync so that they
  // are on disk with the rest when it returns
  const t = opts.target;
  const writeSettings = async (): Promise<void> => {
    for (const d of ['pg_wal', 'pg_wal/archive_status']) {
      await mkdir(join(targetDir, d), { recursive: true, mode: 0o700 });
      if (owner) await chown(join(targetDir, d), owner.uid, owner.gid);
    }
    const restoreCommand = restoreCommandFor(opts, targetDir);
    const lines = [`# added by ferry pg restore (snapshot ${chosen.id.slice(0, 12)})`, `restore_command = ${confQuote(restoreCommand)}`, "recovery_target_action = 'promote'", "recovery_target_timeline = 'latest'"];
    if (t.kind === 'time') lines.push(`recovery_target_time = ${confQuote(pgTargetTime(t.text))}`);
    if (t.kind === 'lsn') lines.push(`recovery_target_lsn = ${confQuote(t.lsn)}`);
    if (t.kind === 'xid') lines.push(`recovery_target_xid = ${confQuote(t.xid)}`);
    if (t.kind === 'name') lines.push(`recovery_target_name = ${confQuote(t.name)}`);
    if (t.kind === 'immediate') lines.push("recovery_target = 'immediate'");
    if (t.kind !== 'latest' && t.kind !== 'immediate') lines.push(`recovery_target_inclusive = ${opts.exclusive ? 'off' : 'on'}`);
    if (opts.port) lines.push(`port = ${opts.port}`);
    if (opts.noArchive) lines.push("archive_mode = 'off'");
    await appendFile(join(targetDir, 'postgresql.auto.conf'), '\n' + lines.join('\n') + '\n');
    await writeFile(join(targetDir, 'recovery.signal'), '');
    if (owner) {
      await chown(join(targetDir, 'postgresql.auto.conf'), owner.uid, owner.gid);
      await chown(join(targetDir, 'recovery.signal'), owner.uid, owner.gid);
    }
  };
  step(`restoring snapshot ${chosen.id.slice(0, 12)} (consistent at ${meta.stopTime}, LSN ${meta.stopLsn}) into ${targetDir}`);
  // Over an earlier restore (--delta, --force): its fetch worker may still be waiting out its idle time there.
  if (opts.delta || opts.force) await stopWorker(spoolLayout(restoreSpool(targetDir)).fetchPid, FETCH_WORKER_MARKER);
  await restoreTree(repo, manifest, targetDir, { delta: opts.delta, force: opts.force, owner, relocate, onProgress: opts.onProgress, beforeSync: writeSettings });

  const report: PgRestoreReport = {
    snapshot: chosen.id,
    walFetch: opts.walFetch ?? 'async',
    targetDir,
    target: opts.target,
    snapshotStopTime: meta.stopTime,
    snapshotStopLsn: meta.stopLsn,
    started: false,
    ...(lastAt !== undefined ? { lastArchivedAt: new Date(lastAt).toISOString() } : {}),
  };
  if (!opts.start) return report;
  await opts.beforeStart?.(targetDir);

  // 4. start, wait for promotion, report
  const bin = pgBinDir(Math.floor(meta.serverVersion / 10000));
  const logFile = join(targetDir, 'ferry-restore.log');
  const port = opts.port ?? 5432;
  const runAs = owner ? { uid: owner.uid, gid: owner.gid } : {};
  step(`starting PostgreSQL on port ${port} (log: ${logFile})`);
  await writeFile(logFile, '');
  if (owner) await chown(logFile, owner.uid, owner.gid);
  const pgEnv = { ...process.env };
  for (const k of Object.keys(pgEnv)) if (k.startsWith('PG')) delete pgEnv[k];
  try {
    await runPg(join(bin, 'pg_ctl'), ['-D', targetDir, '-l', logFile, '-w', '-t', String(Math.round((opts.timeoutMs ?? 3_600_000) / 1000)), '-o', `-p ${port} -k ${targetDir}`, 'start'], { ...runAs, env: pgEnv });
  } catch (e) {
    throw new PostgresError(`the restored server did not start: ${(e as Error).message}; log: ${(await tail(logFile)).join(' | ')}`);
  }
  report.started = true;
  report.port = port;
  report.socketDir = targetDir;
  const pollStart = Date.now();
  const deadline = pollStart + (opts.timeoutMs ?? 3_600_000);
  step('waiting for recovery to reach its target and promote');
  // Promotion is read from pg_control (no login needed: peer authentication would refuse root);
  // the exact point from the server's log and, when a login works, from the server itself.
  for (;;) {
    const control = await runPg(join(bin, 'pg_controldata'), ['-D', targetDir], { ...runAs, env: { ...pgEnv, LC_ALL: 'C' } }).catch(() => undefined);
    if (control && /Database cluster state:\s+in production/.test(control.stdout)) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      const stopLine = /recovery stopping [^\n]*/.exec(log)?.[0];
      const lastTx = /last completed transaction was at log time ([^\n]*)/.exec(log)?.[1] ?? null;
      const redoDone = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(log)?.[1];
      const tli = Number(/Latest checkpoint's TimeLineID:\s+(\d+)/.exec(control.stdout)?.[1] ?? 0);
      let lsn = redoDone ?? '';
      const c = await connect(`postgresql://postgres@/postgres?host=${encodeURIComponent(targetDir)}&port=${port}`).catch(() => undefined);
      if (c) {
        const r = await c.query<{ lsn: string | null }>('SELECT pg_last_wal_replay_lsn()::text AS lsn').catch(() => undefined);
        lsn = r?.rows[0]?.lsn ?? lsn;
        await c.end().catch(() => undefined);
      }
      // Promoted: restore_command runs no more, so its fetch worker and what it prefetched can go.
      const prefetch = await stopRestoreFetch(targetDir);
      if (prefetch) report.prefetch = prefetch;
      report.reached = { lsn, lastTransactionTime: lastTx, timeline: tli, ...(stopLine ? { stopLine } : {}) };
      if (t.kind === 'latest') {
        report.dataLossWindow = `transactions committed after ${lastTx ?? 'the last replayed transaction'} were not in the archive${report.lastArchivedAt ? ` (newest WAL archived at ${report.lastArchivedAt})` : ''} and are lost`;
      }
      return report;
    }
    const pid = await stat(join(targetDir, 'postmaster.pid')).catch(() => undefined);
    if (!pid) {
      await stopRestoreFetch(targetDir);
      throw new PostgresError(`the restored server stopped during recovery: ${(await tail(logFile)).join(' | ')}`);
    }
    if (Date.now() > deadline) throw new PostgresError(`recovery did not finish within the timeout; the server is still running in ${targetDir}`);
    // Every 100 ms at first (most recoveries of a day's WAL end within seconds, and the poll is
    // part of the reported time to ready), then every second, not to spawn pg_controldata ten
    // times a second through an hour of replay.
    await new Promise((r) => setTimeout(r, Date.now() - pollStart < 30_000 ? 100 : 1000));
  }
}

async function tail(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trim().split('\n').filter((l) => /FATAL|ERROR|PANIC|LOG:  (recovery|redo|consistent)/.test(l)).slice(-4);
}
