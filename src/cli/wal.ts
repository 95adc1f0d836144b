/**
 * `ferry wal push|fetch|list|stream`: continuous archiving for PostgreSQL.
 *
 *   archive_command = '/usr/bin/ferry wal push %p'
 *   restore_command = '/usr/bin/ferry wal fetch %f %p'
 *
 * with FERRY_REPO and FERRY_KEY_FILE in the server's environment (or inline:
 * `FERRY_REPO=/srv/repo FERRY_KEY_FILE=/etc/ferry/key ferry wal push %p`).
 * These run once per WAL file, so the synchronous paths stay lean: no lock, no
 * index, no config file unless one is given, and the async machinery and the
 * streamer load only when asked for.
 */
import { dirname, join, resolve } from 'node:path';
import { bytes, table } from '../util/format.ts';
import { FerryError, UsageError, errorMessage } from '../util/errors.ts';
import { WalMissingError, fetchWalOpeningTo, listWal, parseTimeline, pushWalFile } from '../postgres/wal.ts';
import { parseWalName } from '../postgres/walname.ts';
import { onStopSignals, seconds, str, type Command, type ParsedArgs } from './command.ts';
import type { Context } from './context.ts';

function count(v: string | undefined, dflt: number, flag: string, max = 1024): number {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) throw new UsageError(`${flag} takes a whole number from 1 to ${max}, got "${v}"`);
  return Number(v);
}

function asyncWanted(ctx: Context, values: ParsedArgs['values']): boolean {
  return !!values.async || ctx.env.FERRY_WAL_ASYNC === '1' || ctx.env.FERRY_WAL_ASYNC === 'true';
}

async function spoolFor(ctx: Context, values: ParsedArgs['values'], anchor: string): Promise<string> {
  const given = str(values.spool) ?? ctx.env.FERRY_SPOOL;
  if (given) return resolve(given);
  const { defaultSpool } = await import('../postgres/wal-async.ts');
  return defaultSpool(ctx.repoUrl(), anchor);
}

/** The command line that runs this Ferry again (for detached workers), plus the flags that pick the repository. */
function self(values: ParsedArgs['values']): string[] {
  const cmd = [process.execPath, ...process.execArgv, resolve(process.argv[1])];
  const repo = str(values.repo);
  const config = str(values.config);
  return [...cmd, ...(repo ? ['--repo', repo] : []), ...(config ? ['--config', config] : [])];
}

function logLine(line: string): void {
  process.stderr.write(`${new Date().toISOString()} [${process.pid}] ${line}\n`);
}

const push: Command = {
  name: 'wal push',
  summary: "archive one WAL file (archive_command = 'ferry wal push %p')",
  usage: 'PATH [--async [--spool DIR] [--parallel N] [--timeout SECONDS]]',
  description: [
    'Exits 0 only once the file is durably in the repository and its stored length checked.',
    'A file already archived with the same content succeeds with a warning; with different',
    'content it fails and nothing is overwritten.',
    '',
    '--async (or FERRY_WAL_ASYNC=1) hands the file to a background push worker that also pushes',
    'the segments PostgreSQL has ready (archive_status/*.ready) ahead of time, --parallel N at once',
    '(default 4), and still returns 0 only once this file is stored. Its spool directory is',
    '--spool DIR or FERRY_SPOOL (default: a private directory under the temp dir).',
  ].join('\n'),
  options: { async: { type: 'boolean' }, spool: { type: 'string' }, parallel: { type: 'string' }, timeout: { type: 'string' } },
  args: [1, 1],
  async run(ctx, { positionals, values }) {
    const path = resolve(positionals[0]);
    if (asyncWanted(ctx, values)) {
      const name = parseWalName(path.slice(path.lastIndexOf('/') + 1)).name;
      const a = await import('../postgres/wal-async.ts');
      const walDir = dirname(path);
      const spool = await spoolFor(ctx, values, walDir);
      const parallel = count(str(values.parallel), 4, '--parallel', 64);
      const m = await a.pushAsync({
        spool,
        path,
        repoUrl: ctx.repoUrl(),
        timeoutMs: seconds(str(values.timeout), 600, '--timeout'),
        startWorker: () =>
          a.launchWorker({
            command: self(values),
            args: ['wal', 'push-worker', '--spool', spool, '--wal-dir', walDir, '--parallel', String(parallel)],
            logFile: join(spool, 'push-worker.log'),
          }),
      });
      if (m.outcome === 'duplicate') ctx.warn(`${name} was already archived with the same content`);
      if (ctx.json) ctx.out({ name, outcome: m.outcome, storedBytes: m.storedBytes, async: true }, () => '');
      return;
    }
    // Open the repository while the file is read (on S3 that is a few round trips).
    const opening = ctx.repo();
    opening.catch(() => undefined);
    const name = parseWalName(path.slice(path.lastIndexOf('/') + 1)).name;
    const repo = await opening;
    const r = await pushWalFile(repo, path, { where: positionals[0] });
    if (r.outcome === 'duplicate') ctx.warn(`${name} is already archived in ${repo.location} with the same content; nothing to do`);
    if (r.outcome === 'covered') ctx.warn(`${name}: the archived copy in ${repo.location} already holds all of this file; nothing to do`);
    if (r.outcome === 'replaced') ctx.warn(`${name}: replaced the archived copy, which this file extends`);
    if (ctx.json) ctx.out(r, () => '');
  },
};

const fetch: Command = {
  name: 'wal fetch',
  summary: "restore one WAL file (restore_command = 'ferry wal fetch %f %p')",
  usage: 'NAME DEST [--async [--spool DIR] [--ahead K] [--parallel N]]',
  description: [
    'Writes DEST atomically (temp file, then rename) after authenticating the content.',
    'A name the repository does not hold exits 1 with one line: normal at the end of recovery.',
    'Only NAME itself is served: NAME.partial is fetched only when asked for by that name.',
    '',
    '--async (or FERRY_WAL_ASYNC=1) keeps the next K segments (--ahead, default 16) prefetched in',
    'the spool (--spool DIR or FERRY_SPOOL), --parallel N at once (default 4), so the next call is',
    'a local rename.',
  ].join('\n'),
  options: { async: { type: 'boolean' }, spool: { type: 'string' }, ahead: { type: 'string' }, parallel: { type: 'string' } },
  args: [2, 2],
  async run(ctx, args) {
    try {
      return await fetchRun(ctx, args);
    } catch (e) {
      // PostgreSQL reads exit 1 as "no such file" and ends recovery there, promoting at an
      // earlier point than asked. Only a missing file may say so; any other failure (storage
      // unreachable, wrong key, corruption) exits above 125, which makes PostgreSQL stop recovery.
      if (e instanceof WalMissingError) throw e;
      throw new WalFetchFailed(`${errorMessage(e)} (recovery must not go on without this WAL file)`, { hint: e instanceof FerryError ? e.hint : undefined, cause: e });
    }
  },
};

/** A `wal fetch` failure other than a missing file: exit 128 so PostgreSQL aborts recovery instead of promoting early. */
class WalFetchFailed extends FerryError {
  override readonly exitCode = 128;
}

async function fetchRun(ctx: Context, { positionals, values }: ParsedArgs): Promise<void> {
  {
    const [name, destArg] = positionals;
    const w = parseWalName(name);
    const dest = resolve(destArg);
    if (asyncWanted(ctx, values) && w.kind === 'segment') {
      const a = await import('../postgres/wal-async.ts');
      const spool = await spoolFor(ctx, values, dirname(dest));
      const ahead = count(str(values.ahead), 16, '--ahead', 1024);
      const parallel = count(str(values.parallel), 4, '--parallel', 64);
      const ensureWorker = () =>
        a.ensureWorker(a.spoolLayout(spool).fetchPid, a.FETCH_WORKER_MARKER, {
          command: self(values),
          args: ['wal', 'fetch-worker', '--spool', spool, '--ahead', String(ahead), '--parallel', String(parallel)],
          logFile: join(spool, 'fetch-worker.log'),
        });
      const repoUrl = ctx.repoUrl();
      const got = await a.takePrefetched(spool, name, dest, repoUrl);
      if (got) {
        await a.recordWant(spool, name, got.bytes, repoUrl);
        ensureWorker();
        if (ctx.json) ctx.out({ name, dest, bytes: got.bytes, prefetched: true }, () => '');
        return;
      }
      const n = await fetchInto(ctx, name, dest);
      await a.recordWant(spool, name, n, repoUrl);
      ensureWorker();
      if (ctx.json) ctx.out({ name, dest, bytes: n, prefetched: false }, () => '');
      return;
    }
    const n = await fetchInto(ctx, name, dest);
    if (ctx.json) ctx.out({ name, dest, bytes: n }, () => '');
  }
}

/** One WAL file from the repository into `dest` (atomically); returns its size. */
async function fetchInto(ctx: Context, name: string, dest: string): Promise<number> {
  return fetchWalOpeningTo(ctx.repo(), ctx.storage(), name, dest);
}

const list: Command = {
  name: 'wal list',
  summary: 'list archived WAL files (segments, .partial, history and backup files) with stored sizes',
  usage: '[--timeline T] [--json]',
  options: { timeline: { type: 'string' } },
  async run(ctx, { values }) {
    const t = str(values.timeline);
    const repo = await ctx.repo();
    const items = await listWal(repo.storage, t !== undefined ? { timeline: parseTimeline(t) } : {});
    ctx.out(items, () => {
      if (!items.length) return 'no WAL archived';
      const total = items.reduce((s, i) => s + i.size, 0);
      return [
        table(
          ['NAME', 'KIND', 'STORED', 'TIME'],
          items.map((i) => [i.name, i.kind, bytes(i.size), new Date(i.mtime).toISOString().replace(/\.\d+Z$/, 'Z')]),
        ),
        `${items.length} file(s), ${bytes(total)} stored`,
      ].join('\n');
    });
  },
};

const stream: Command = {
  name: 'wal stream',
  summary: 'stream WAL over replication (pg_receivewal with a slot) into the repository, RPO of seconds',
  usage: '[--slot NAME] [--create-slot] [--dbname CONNINFO] [--spool DIR] [--partial-interval SECONDS] [--until-lsn LSN]',
  description: [
    "Supervises PostgreSQL's pg_receivewal writing into SPOOL/stream (restarted with backoff when it",
    'exits) and pushes every completed segment, and the segment in progress as NAME.partial every',
    '--partial-interval seconds (default 5), with the same checks as `wal push`. Connects with',
    '--dbname or the libpq variables (PGHOST, PGPORT, PGUSER). --create-slot creates --slot',
    '(default name "ferry") if missing. Stops cleanly on SIGTERM or SIGINT after uploading what it',
    'received, or by itself once WAL past --until-lsn is received and stored (pg_receivewal --endpos).',
  ].join('\n'),
  options: {
    slot: { type: 'string' },
    'create-slot': { type: 'boolean' },
    dbname: { type: 'string' },
    spool: { type: 'string' },
    'partial-interval': { type: 'string' },
    'until-lsn': { type: 'string' },
  },
  async run(ctx, { values }) {
    const createSlot = !!values['create-slot'];
    const slot = str(values.slot) ?? (createSlot ? 'ferry' : undefined);
    const dbname = str(values.dbname);
    const e = ctx.env;
    const spool = await spoolFor(ctx, values, `stream:${dbname ?? `${e.PGHOST ?? ''}:${e.PGPORT ?? ''}`}:${slot ?? ''}`);
    const partialIntervalMs = seconds(str(values['partial-interval']), 5, '--partial-interval');
    const repo = await ctx.repo();
    const { streamWal } = await import('../postgres/wal-stream.ts');
    const stop = onStopSignals();
    try {
      const started = Date.now();
      const s = await streamWal({
        repo,
        dir: join(spool, 'stream'),
        slot,
        createSlot,
        dbname,
        untilLsn: str(values['until-lsn']),
        partialIntervalMs,
        signal: stop.signal,
        log: logLine,
      });
      ctx.out({ ...s, durationMs: Date.now() - started }, () => `streamed ${s.segments} WAL file(s) (${bytes(s.bytes)}) and ${s.partials} partial upload(s)${s.lastSegment ? `; last ${s.lastSegment}` : ''}`);
    } finally {
      stop.dispose();
    }
  },
};

const pushWorker: Command = {
  name: 'wal push-worker',
  summary: 'background worker of `wal push --async` (started on demand; not run by hand)',
  usage: '--spool DIR [--wal-dir DIR] [--parallel N] [--idle-exit SECONDS]',
  description: 'Exits after --idle-exit seconds (or FERRY_WAL_IDLE_EXIT; default 30) with nothing to push.',
  options: { spool: { type: 'string' }, 'wal-dir': { type: 'string' }, parallel: { type: 'string' }, 'idle-exit': { type: 'string' } },
  async run(ctx, { values }) {
    const spool = str(values.spool);
    if (!spool) throw new UsageError('wal push-worker needs --spool DIR');
    const a = await import('../postgres/wal-async.ts');
    const repo = await ctx.repo().catch(async (e: unknown) => {
      await a.failQueued(resolve(spool), e);
      throw e;
    });
    const stop = onStopSignals();
    try {
      const walDir = str(values['wal-dir']);
      await a.runPushWorker(repo, {
        spool: resolve(spool),
        repoUrl: ctx.repoUrl(),
        walDir: walDir ? resolve(walDir) : undefined,
        parallel: count(str(values.parallel), 4, '--parallel', 64),
        idleExitMs: seconds(str(values['idle-exit']) ?? ctx.env.FERRY_WAL_IDLE_EXIT, 30, '--idle-exit'),
        log: logLine,
        signal: stop.signal,
      });
    } finally {
      stop.dispose();
    }
  },
};

const fetchWorker: Command = {
  name: 'wal fetch-worker',
  summary: 'background prefetcher of `wal fetch --async` (started on demand; not run by hand)',
  usage: '--spool DIR [--ahead K] [--parallel N] [--idle-exit SECONDS]',
  description: 'Exits after --idle-exit seconds (or FERRY_WAL_IDLE_EXIT; default 30) without a request.',
  options: { spool: { type: 'string' }, ahead: { type: 'string' }, parallel: { type: 'string' }, 'idle-exit': { type: 'string' } },
  async run(ctx, { values }) {
    const spoolArg = str(values.spool);
    if (!spoolArg) throw new UsageError('wal fetch-worker needs --spool DIR');
    const spool = resolve(spoolArg);
    const a = await import('../postgres/wal-async.ts');
    const repo = await ctx.repo();
    const stop = onStopSignals();
    try {
      const ran = await a.runFetchWorker(repo, {
        spool,
        repoUrl: ctx.repoUrl(),
        ahead: count(str(values.ahead), 16, '--ahead', 1024),
        parallel: count(str(values.parallel), 4, '--parallel', 64),
        idleExitMs: seconds(str(values['idle-exit']) ?? ctx.env.FERRY_WAL_IDLE_EXIT, 30, '--idle-exit'),
        log: logLine,
        signal: stop.signal,
      });
      // The spool of a restored server whose recovery has ended is not needed again.
      if (ran && !stop.signal.aborted) {
        const { retireRestoreSpoolIfRecovered } = await import('../postgres/restore.ts');
        if (await retireRestoreSpoolIfRecovered(spool)) logLine(`removed the spool ${spool}: recovery has ended`);
      }
    } finally {
      stop.dispose();
    }
  },
};

export const walCommands: Command[] = [push, fetch, list, stream, pushWorker, fetchWorker];

/** The commands PostgreSQL runs once per WAL file (see ferry-wal.ts). */
export const walSegmentCommands: Command[] = [push, fetch];
