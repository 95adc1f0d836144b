/**
 * The scratch instance a table is read back from: a throwaway PostgreSQL server
 * holding the database as it was at a snapshot, at a point in time, or in an
 * export. It lives in a fresh temporary directory, listens only on a unix socket
 * in its data directory, accepts only local connections, never archives, and is
 * always stopped (pg_ctl -D DIR stop -m immediate) and its directory removed by
 * close(), which callers MUST call, also on failure and on interruption.
 */
import { chown, mkdir, mkdtemp, rm, writeFile, appendFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { listSnapshots, resolveSnapshot } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { osUser, pgBinDir, runPg } from '../postgres/binaries.ts';
import type { PgSnapshotMeta } from '../postgres/meta.ts';
import { chooseSnapshot, type RecoveryTarget } from '../postgres/plan.ts';
import { restorePg, type PgRestoreReport } from '../postgres/restore.ts';
import { freePort } from '../postgres/scratch.ts';
import { DEFAULT_PG_ASSET } from '../postgres/snapshot.ts';
import { exportToFile } from '../export/read.ts';
import { resolveExport } from '../export/meta.ts';
import { connect, ident } from '../postgres/connect.ts';
import { createScratchCluster } from '../postgres/scratch.ts';
import { PostgresError } from '../util/errors.ts';
import type { TableName } from './name.ts';

export type TableSource = { kind: 'snapshot'; id: string } | { kind: 'time'; text: string; time: number } | { kind: 'export'; id: string };

export interface Scratch {
  dataDir: string;
  port: number;
  /** Connection string to `database` on the scratch server (unix socket, user postgres). */
  conninfo(database: string): string;
  /** What the scratch holds, for reports: the snapshot and the point recovery reached. */
  origin: { snapshot?: string; reached?: PgRestoreReport['reached']; export?: string; exportTime?: string };
  /** The database to read from, when it is fixed by the source (an export holds one database). */
  database?: string;
  /** Stops the server (immediate) and removes its directory. Safe to call twice. */
  close(): Promise<void>;
}

export interface ScratchOptions {
  asset?: string;
  /** Where the temporary directory goes (default: the OS temp directory). */
  parentDir?: string;
  ferryCommand: string;
  restoreEnv: Record<string, string>;
  timeoutMs?: number;
  onStep?: (s: string) => void;
  /** Called as soon as a close() exists, before any server can be running, so interruption can clean up. */
  onCloser?: (close: () => Promise<void>) => void;
}

/** The recovery target a physical source restores to. */
function targetOf(source: TableSource): RecoveryTarget {
  if (source.kind === 'time') return { kind: 'time', time: source.time, text: source.text };
  return { kind: 'immediate' };
}

/**
 * Refuses, before anything is restored, a source no snapshot can serve (an unknown
 * snapshot id, no snapshot at all, a time before the oldest snapshot or in the future). Whether the WAL
 * reaches a time is checked again by restorePg before it writes anything.
 */
export async function checkSource(repo: Repository, source: TableSource, asset = DEFAULT_PG_ASSET): Promise<void> {
  if (source.kind === 'export') return;
  if (source.kind === 'snapshot') await resolveSnapshot(repo, source.id, { kind: 'postgres', asset });
  const all = await listSnapshots(repo, { kind: 'postgres', asset });
  const candidates = all.map((s) => ({ id: s.id, meta: s.manifest.meta as unknown as PgSnapshotMeta }));
  const now = repo.clock.now();
  chooseSnapshot(candidates, targetOf(source), now, { lastArchivedAt: now });
}

/** A fresh directory the database OS user can reach (mode 0711 so only the data directory inside is readable). */
async function scratchDir(parent: string | undefined): Promise<{ root: string; owner?: { uid: number; gid: number } }> {
  const base = resolve(parent ?? tmpdir());
  await mkdir(base, { recursive: true });
  const root = await mkdtemp(join(base, 'ferry-table-'));
  await chmod(root, 0o711);
  const owner = process.getuid?.() === 0 ? osUser('postgres') : undefined;
  return { root, ...(owner ? { owner } : {}) };
}

function makeCloser(dataDir: string, root: string, owner?: { uid: number; gid: number }): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () =>
    (done ??= (async () => {
      const env = { ...process.env };
      for (const k of Object.keys(env)) if (k.startsWith('PG')) delete env[k];
      await runPg(join(pgBinDir(), 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', 'stop'], { ...(owner ?? {}), env }).catch(() => undefined);
      await rm(root, { recursive: true, force: true, maxRetries: 3 });
    })());
}

/** Settings that make a scratch copy private and light, written before it starts. */
async function lockDown(dataDir: string, owner?: { uid: number; gid: number }): Promise<void> {
  const hba = join(dataDir, 'ferry-scratch-hba.conf');
  await writeFile(hba, '# ferry table restore scratch: local socket only\nlocal all all trust\n', { mode: 0o600 });
  if (owner) await chown(hba, owner.uid, owner.gid);
  const q = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
  await appendFile(
    join(dataDir, 'postgresql.auto.conf'),
    [
      '# ferry table restore scratch',
      `hba_file = ${q(hba)}`,
      "listen_addresses = ''",
      `unix_socket_directories = ${q(dataDir)}`,
      "shared_buffers = '128MB'",
      'hot_standby = off',
      'autovacuum = off',
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      '',
    ].join('\n'),
  );
}

/**
 * Restores a snapshot (to its consistent point) or a point in time into a new scratch
 * server and starts it. Tablespaces are placed inside the scratch directory.
 */
export async function openPhysicalScratch(repo: Repository, source: Exclude<TableSource, { kind: 'export' }>, opts: ScratchOptions): Promise<Scratch> {
  const asset = opts.asset ?? DEFAULT_PG_ASSET;
  const { root, owner } = await scratchDir(opts.parentDir);
  const dataDir = join(root, 'data');
  const close = makeCloser(dataDir, root, owner);
  opts.onCloser?.(close);
  try {
    const tablespaceMap: Record<string, string> = {};
    for (const s of await listSnapshots(repo, { kind: 'postgres', asset })) {
      for (const t of (s.manifest.meta as unknown as PgSnapshotMeta).tablespaces ?? []) tablespaceMap[String(t.oid)] = join(root, 'tablespaces', String(t.oid));
    }
    const port = await freePort();
    const report = await restorePg(repo, {
      targetDir: dataDir,
      asset,
      ...(source.kind === 'snapshot' ? { snapshot: source.id } : {}),
      target: targetOf(source),
      ...(owner ? { owner: 'postgres' } : {}),
      tablespaceMap,
      ferryCommand: opts.ferryCommand,
      restoreEnv: opts.restoreEnv,
      start: true,
      port,
      noArchive: true,
      beforeStart: (dir) => lockDown(dir, owner),
      timeoutMs: opts.timeoutMs,
      onStep: opts.onStep,
    });
    return {
      dataDir,
      port,
      conninfo: (db) => `postgresql://postgres@/${encodeURIComponent(db)}?host=${encodeURIComponent(dataDir)}&port=${port}`,
      origin: { snapshot: report.snapshot, ...(report.reached ? { reached: report.reached } : {}) },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * Loads export `id` into a new scratch cluster: the whole schema (pre-data, so the
 * table's types and sequences exist), then only the table's data. Constraints,
 * indexes and triggers (post-data) are left out: the scratch copy is only read.
 */
export async function openExportScratch(repo: Repository, id: string, table: TableName, opts: ScratchOptions & { cold?: Repository }): Promise<Scratch> {
  const step = opts.onStep ?? (() => undefined);
  const { root, owner } = await scratchDir(opts.parentDir);
  const dataDir = join(root, 'data');
  const close = makeCloser(dataDir, root, owner);
  opts.onCloser?.(close);
  try {
    const ref = await resolveExport({ hot: repo, ...(opts.cold ? { cold: opts.cold } : {}) }, id);
    const dump = join(root, 'export.dump');
    step(`writing export ${ref.id.slice(0, 12)} of database "${ref.meta.database}" (${ref.meta.time}) to the scratch directory`);
    await exportToFile(repo, ref.id, dump, opts.cold ? { cold: opts.cold } : {});
    step('creating a scratch cluster');
    const c = await createScratchCluster(dataDir, { conf: ['fsync = off', 'synchronous_commit = off', 'full_page_writes = off', 'autovacuum = off', "shared_buffers = '128MB'"] });
    const db = ref.meta.database;
    const admin = await connect(c.conninfo);
    try {
      const has = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [db]);
      if (!has.rowCount) await admin.query(`CREATE DATABASE ${ident(db)}`);
    } finally {
      await admin.end().catch(() => undefined);
    }
    const restoreBin = join(pgBinDir(Number(/^(\d+)/.exec(ref.meta.pgDumpVersion)?.[1]) || undefined), 'pg_restore');
    const env = { ...c.env, PGDATABASE: db };
    step(`loading the schema and the data of ${table.schema}.${table.table} with pg_restore`);
    // Pre-data of everything: objects the table needs (types, sequences, extensions) come along; a failing
    // unrelated object (e.g. an extension not installed here) does not stop it, the table's absence later does.
    const pre = await runPg(restoreBin, ['--section=pre-data', '--no-owner', '--no-privileges', '--no-password', '-d', db, dump], { env }).catch((e: Error) => ({ stdout: '', stderr: e.message }));
    await runPg(restoreBin, ['--section=data', '--no-owner', '--no-privileges', '--no-password', '--exit-on-error', '-n', table.schema, '-t', table.table, '-d', db, dump], { env }).catch((e: Error) => {
      throw new PostgresError(`pg_restore could not load ${table.schema}.${table.table} from export ${ref.id.slice(0, 12)}: ${e.message}${pre.stderr ? `; schema step: ${pre.stderr.trim().split('\n').slice(-2).join(' ')}` : ''}`);
    });
    return {
      dataDir,
      port: c.port,
      database: db,
      conninfo: (d) => `postgresql://postgres@/${encodeURIComponent(d)}?host=${encodeURIComponent(dataDir)}&port=${c.port}`,
      origin: { export: ref.id, exportTime: ref.meta.time },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
