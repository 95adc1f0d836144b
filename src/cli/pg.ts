/** `ferry pg snapshot | snapshots | restore`: PostgreSQL physical snapshots and point-in-time recovery. */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { withLock } from '../repo/lock.ts';
import { listSnapshots } from '../repo/manifest.ts';
import { recordedRun } from '../repo/runs.ts';
import type { PgSnapshotMeta } from '../postgres/meta.ts';
import { parseTargetTime, type RecoveryTarget } from '../postgres/plan.ts';
import { restorePg } from '../postgres/restore.ts';
import { DEFAULT_PG_ASSET, takePgSnapshot } from '../postgres/snapshot.ts';
import { parseLsn } from '../postgres/walname.ts';
import { UsageError } from '../util/errors.ts';
import { bytes, duration, table } from '../util/format.ts';
import { backupProgressLine, compressionLevel, seconds, str, strs, type Command } from './command.ts';
import type { Context } from './context.ts';

const snapshot: Command = {
  name: 'pg snapshot',
  summary: 'take a PostgreSQL snapshot (online, non-exclusive; only changed files and chunks are stored)',
  usage: '[--label L]... [--asset NAME] [--pgdata DIR] [--compression-level N] [--no-fingerprint] [--no-archive-check] [--json]',
  description:
    'Connects with the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE) and reads the data directory\n' +
    '(--pgdata or PGDATA; default: the server\'s data_directory) directly, so it runs on the database host.\n' +
    'Waits until the WAL that makes the snapshot consistent is archived into this repository.\n' +
    'Pages are compressed with zstd level 1 unless --compression-level (or the configured\n' +
    'compression_level / FERRY_COMPRESSION_LEVEL) says otherwise: on table and index pages it\n' +
    'is about twice as fast as level 3 and as small or smaller (docs/postgres.md).',
  options: {
    label: { type: 'string', multiple: true },
    'compression-level': { type: 'string' },
    asset: { type: 'string' },
    pgdata: { type: 'string' },
    'no-fingerprint': { type: 'boolean' },
    'no-archive-check': { type: 'boolean' },
    'lock-wait': { type: 'string' },
  },
  async run(ctx, { values }) {
    const repo = await ctx.repo();
    const asset = str(values.asset) ?? DEFAULT_PG_ASSET;
    const lockWait = seconds(str(values['lock-wait']), 600, '--lock-wait');
    const r = await recordedRun(
      repo,
      { job: 'pg snapshot', asset },
      () =>
        withLock(
          repo,
          'pg snapshot',
          false,
          () =>
            takePgSnapshot(repo, {
              asset,
              labels: strs(values.label),
              pgdata: str(values.pgdata) ?? ctx.env.PGDATA,
              fingerprint: !values['no-fingerprint'],
              compressionLevel: compressionLevel(str(values['compression-level']) ?? ctx.settings.compressionLevel, '--compression-level'),
              archiveCheck: !values['no-archive-check'],
              onProgress: (p) => ctx.progress.update(backupProgressLine(p)),
            }),
          lockWait,
        ),
      (x) => ({ bytes: x.manifest.stats.storedBytes, snapshot: x.id }),
    );
    ctx.progress.done();
    const s = r.manifest.stats;
    if (r.meta.checksumFailures.length) {
      ctx.warn(`${r.meta.checksumFailures.length} page(s) failed checksum validation: ${r.meta.checksumFailures.slice(0, 5).map((f) => `${f.file} block ${f.block}`).join(', ')}`);
    }
    ctx.out({ id: r.id, ...r.manifest, tree: undefined }, () =>
      [
        `snapshot ${r.id.slice(0, 12)} of PostgreSQL ${r.meta.systemIdentifier} saved (timeline ${r.meta.timeline}, LSN ${r.meta.startLsn} .. ${r.meta.stopLsn})`,
        `  ${s.files} files, ${bytes(s.bytes)}: ${s.filesRead} read, ${s.filesUnchanged} unchanged; ${bytes(s.newBytes)} new, ${bytes(s.storedBytes)} stored, in ${duration(s.durationMs)}`,
        r.meta.fingerprint ? `  fingerprint: ${r.meta.fingerprint.tables.length} tables at LSN ${r.meta.fingerprint.lsn}` : '  no fingerprint',
      ].join('\n'),
    );
  },
};

const snapshots: Command = {
  name: 'pg snapshots',
  summary: 'list PostgreSQL snapshots',
  usage: '[--asset NAME] [--json]',
  options: { asset: { type: 'string' } },
  async run(ctx, { values }) {
    const repo = await ctx.repo();
    const list = await listSnapshots(repo, { kind: 'postgres', ...(str(values.asset) ? { asset: str(values.asset) } : {}) });
    const rows = list.map((s) => {
      const m = s.manifest.meta as unknown as PgSnapshotMeta;
      return {
        id: s.id,
        asset: s.manifest.asset,
        time: s.manifest.endTime,
        labels: s.manifest.labels,
        systemIdentifier: m.systemIdentifier,
        timeline: m.timeline,
        startLsn: m.startLsn,
        stopLsn: m.stopLsn,
        stopTime: m.stopTime,
        startWal: m.startWal,
        stopWal: m.stopWal,
        bytes: s.manifest.stats.bytes,
        storedBytes: s.manifest.stats.storedBytes,
        checksumFailures: m.checksumFailures.length,
      };
    });
    ctx.out(rows, () =>
      rows.length === 0
        ? 'no PostgreSQL snapshots'
        : table(
            ['ID', 'CONSISTENT AT', 'TLI', 'STOP LSN', 'SIZE', 'ADDED', 'LABELS'],
            rows.map((r) => [r.id.slice(0, 12), r.stopTime.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), String(r.timeline), r.stopLsn, bytes(r.bytes), bytes(r.storedBytes), r.labels.join(',')]),
          ),
    );
  },
};

function targetFrom(values: Record<string, unknown>): RecoveryTarget {
  const given = (['to-time', 'to-lsn', 'to-xid', 'to-name', 'before-xid', 'immediate'] as const).filter((k) => values[k] !== undefined);
  if (given.length > 1) throw new UsageError(`give one recovery target, not ${given.map((g) => `--${g}`).join(' and ')}`);
  const v = (k: string) => String(values[k]);
  if (values['to-time'] !== undefined) return { kind: 'time', time: parseTargetTime(v('to-time')), text: v('to-time') };
  if (values['to-lsn'] !== undefined) {
    parseLsn(v('to-lsn'));
    return { kind: 'lsn', lsn: v('to-lsn') };
  }
  if (values['to-xid'] !== undefined || values['before-xid'] !== undefined) {
    const x = v(values['to-xid'] !== undefined ? 'to-xid' : 'before-xid');
    if (!/^\d+$/.test(x)) throw new UsageError(`a transaction id is a number, got "${x}"`);
    return { kind: 'xid', xid: x };
  }
  if (values['to-name'] !== undefined) return { kind: 'name', name: v('to-name') };
  if (values.immediate) return { kind: 'immediate' };
  return { kind: 'latest' };
}

/** What restore_command needs to reach this repository, as files and URLs (never a passphrase). */
export function restoreEnv(ctx: Context): Record<string, string> {
  const env: Record<string, string> = { FERRY_REPO: ctx.repoUrl().includes('://') ? ctx.repoUrl() : resolve(ctx.repoUrl()) };
  if (ctx.settings.keyFile) env.FERRY_KEY_FILE = resolve(ctx.settings.keyFile);
  else if (ctx.settings.passwordFile) env.FERRY_PASSWORD_FILE = resolve(ctx.settings.passwordFile);
  if (ctx.settings.s3Endpoint) env.FERRY_S3_ENDPOINT = ctx.settings.s3Endpoint;
  return env;
}

/** Absolute path of the `ferry` command PostgreSQL should run (bin/ferry of this installation). */
export function ferryCommand(): string {
  // bin/ferry, whether we were started through it or as `node dist/ferry.mjs` (npm run demo).
  const argv1 = process.argv[1];
  const path = argv1 && /\/ferry$/.test(argv1) ? argv1 : resolve(import.meta.dirname ?? '.', '..', 'bin', 'ferry');
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

const restore: Command = {
  name: 'pg restore',
  summary: 'restore a snapshot or a point in time into a new data directory (and optionally start it)',
  usage:
    '--target-dir DIR [--snapshot ID|latest] [--to-time T | --to-lsn L | --to-xid X | --before-xid X | --to-name N | --immediate] [--exclusive]\n' +
    '       [--start --port P] [--delta | --force] [--owner USER] [--tablespace-map OID=DIR]... [--no-archive] [--wal-fetch async|sync] [--json]',
  description:
    'Picks the newest snapshot consistent before the target by itself. With no target, recovers to the end of the\n' +
    'archive (complete database loss). --exclusive (and --before-xid) stop just before the target. The restored\n' +
    "server's restore_command fetches WAL from this repository with FERRY_KEY_FILE or FERRY_PASSWORD_FILE:\n" +
    'by default bin/ferry-wal-fetch, which keeps the next 8 segments prefetched in DIR/pg_wal/.ferry-spool (its\n' +
    'worker is stopped once a --start server has promoted; otherwise it exits 30 s after the last request and, if\n' +
    'the server has promoted by then, removes the spool, keeping its log as DIR/ferry-fetch.log); --wal-fetch sync\n' +
    'runs one `ferry wal fetch` per file instead, with no background process.',
  options: {
    'target-dir': { type: 'string' },
    snapshot: { type: 'string' },
    'to-time': { type: 'string' },
    'to-lsn': { type: 'string' },
    'to-xid': { type: 'string' },
    'before-xid': { type: 'string' },
    'to-name': { type: 'string' },
    immediate: { type: 'boolean' },
    exclusive: { type: 'boolean' },
    start: { type: 'boolean' },
    port: { type: 'string' },
    delta: { type: 'boolean' },
    force: { type: 'boolean' },
    owner: { type: 'string' },
    asset: { type: 'string' },
    'tablespace-map': { type: 'string', multiple: true },
    'no-archive': { type: 'boolean' },
    'wal-fetch': { type: 'string' },
    timeout: { type: 'string' },
  },
  async run(ctx, { values }) {
    const dir = str(values['target-dir']);
    if (!dir) throw new UsageError('pg restore needs --target-dir DIR', { hint: 'the directory must be empty or missing (or pass --delta)' });
    const target = targetFrom(values);
    const port = str(values.port);
    if (port !== undefined && !/^\d+$/.test(port)) throw new UsageError(`--port takes a number, got "${port}"`);
    const walFetch = str(values['wal-fetch']) ?? 'async';
    if (walFetch !== 'async' && walFetch !== 'sync') throw new UsageError(`--wal-fetch takes async or sync, got "${walFetch}"`);
    if (values.start && !port) throw new UsageError('--start needs --port P (the restored server must not collide with a running one)');
    const tsMap: Record<string, string> = {};
    for (const m of strs(values['tablespace-map'])) {
      const [k, ...rest] = m.split('=');
      if (!k || !rest.length) throw new UsageError(`--tablespace-map takes OID=DIR (or NAME=DIR), got "${m}"`);
      tsMap[k] = rest.join('=');
    }
    const repo = await ctx.repo();
    const started = Date.now();
    const report = await withLock(repo, 'pg restore', false, () =>
      restorePg(repo, {
        targetDir: dir,
        asset: str(values.asset),
        snapshot: str(values.snapshot),
        target,
        exclusive: !!values.exclusive || values['before-xid'] !== undefined,
        delta: !!values.delta,
        force: !!values.force,
        owner: str(values.owner),
        tablespaceMap: tsMap,
        ferryCommand: ferryCommand(),
        restoreEnv: restoreEnv(ctx),
        walFetch,
        start: !!values.start,
        port: port ? Number(port) : undefined,
        noArchive: !!values['no-archive'],
        timeoutMs: seconds(str(values.timeout), 3600, '--timeout'),
        onProgress: (p) => ctx.progress.update(`restored ${p.filesDone}/${p.filesTotal} files  ${bytes(p.bytesDone)}/${bytes(p.bytesTotal)}`),
        onStep: (s) => {
          ctx.progress.done();
          if (!ctx.json) process.stderr.write(`ferry: ${s}\n`);
        },
      }),
    );
    ctx.progress.done();
    ctx.out({ ...report, durationMs: Date.now() - started }, () => {
      const lines = [`restored snapshot ${report.snapshot.slice(0, 12)} into ${report.targetDir} in ${duration(Date.now() - started)}`];
      if (report.reached) {
        lines.push(`recovered to LSN ${report.reached.lsn} on timeline ${report.reached.timeline}; last replayed transaction at ${report.reached.lastTransactionTime ?? 'unknown'}`);
        if (report.reached.stopLine) lines.push(`server: ${report.reached.stopLine}`);
        if (report.dataLossWindow) lines.push(`data loss: ${report.dataLossWindow}`);
        if (report.prefetch) lines.push(`WAL prefetch: recovery asked for ${report.prefetch.served} of the ${report.prefetch.prefetched} segments prefetched (log: ${report.targetDir}/ferry-fetch.log)`);
        lines.push(`the server is running: psql -h ${report.socketDir} -p ${report.port}`);
      } else {
        lines.push(`recovery settings written; start it with: pg_ctl -D ${report.targetDir} start (as the database OS user)`);
      }
      return lines.join('\n');
    });
  },
};

export const pgCommands: Command[] = [snapshot, snapshots, restore];
