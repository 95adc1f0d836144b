/**
 * `pg snapshot`: a non-exclusive online backup read straight from the data
 * directory on the database host, like pgBackRest.
 *
 *   1. pg_backup_start (pg_start_backup on 13-14) on a session held open to the end
 *   2. the data directory (and tablespaces) through the tree engine: fixed 128 KiB
 *      chunks for relation files, files unchanged since the parent skipped, chunks
 *      whose pages all predate the parent's start taken from the parent unhashed,
 *      pages validated against their checksums
 *   3. pg_backup_stop(wait_for_archive => false), then, side by side: Ferry waits
 *      until the WAL that makes the backup consistent is in this repository, and
 *      takes the data fingerprint (row counts and checksums, see fingerprint.ts)
 *   4. backup_label and tablespace_map stored, the manifest written.
 */
import { open, realpath, readlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type pg from 'pg';
import { backupTree, type BackupProgress } from '../repo/backup.ts';
import type { TreeNode } from '../repo/tree.ts';
import { listSnapshots, type Manifest } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { ConfigError, PostgresError } from '../util/errors.ts';
import { connect, queryOne } from './connect.ts';
import { fingerprintCluster } from './fingerprint.ts';
import { chunkerFor, excludeFromSnapshot, isMainFork, isRelationFile, relationSegment } from './layout.ts';
import type { PgSnapshotMeta } from './meta.ts';
import { BLCKSZ, RELSEG_PAGES, badPages, pagesOlderThan } from './pagechecksum.ts';
import { lsnSegno, parseLsn, segmentName, walKey } from './walname.ts';

export interface PgSnapshotOptions {
  asset?: string;
  labels?: string[];
  /** Data directory as seen from this host; default: what the server reports. */
  pgdata?: string;
  conninfo?: string;
  fingerprint?: boolean;
  /** zstd level for the snapshot's blobs (default PG_COMPRESSION_LEVEL). */
  compressionLevel?: number;
  /** Check that the WAL making the snapshot consistent reached this repository (default true). */
  archiveCheck?: boolean;
  /** How long to wait for that WAL to show up, ms. */
  archiveTimeoutMs?: number;
  onProgress?: (p: BackupProgress) => void;
}

export const DEFAULT_PG_ASSET = 'postgres';
/**
 * Data pages compress as well or better at zstd level 1 than at 3 (measured on pgbench
 * heap and index pages: 25.5 against 29.5 MB per GiB; a table of random text, uuid,
 * numeric and jsonb: 2.6% larger) at about twice the speed, so that is the default here
 * whatever the repository's level (which other kinds use).
 */
export const PG_COMPRESSION_LEVEL = 1;

interface Server {
  version: number;
  dataDirectory: string;
  systemIdentifier: string;
  dataChecksums: boolean;
  walSegmentSize: number;
  archiveMode: string;
  inRecovery: boolean;
}

async function inspect(c: pg.Client): Promise<Server> {
  const r = await queryOne<Record<string, string | boolean>>(
    c,
    `SELECT current_setting('server_version_num') AS version, current_setting('data_directory') AS datadir,
            (SELECT system_identifier::text FROM pg_control_system()) AS sysid, current_setting('data_checksums') AS checksums,
            (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS segsize, current_setting('archive_mode') AS archive_mode,
            pg_is_in_recovery() AS in_recovery`,
  );
  return {
    version: Number(r.version),
    dataDirectory: String(r.datadir),
    systemIdentifier: String(r.sysid),
    dataChecksums: r.checksums === 'on',
    walSegmentSize: Number(r.segsize),
    archiveMode: String(r.archive_mode),
    inRecovery: r.in_recovery === true,
  };
}

export async function takePgSnapshot(repo: Repository, opts: PgSnapshotOptions = {}): Promise<{ id: string; manifest: Manifest; meta: PgSnapshotMeta }> {
  // Repository reads that need nothing from the server start now, beside the connection and
  // the start checkpoint: the snapshots (for the parent) and the index.
  const asset = opts.asset ?? DEFAULT_PG_ASSET;
  const snapshots = listSnapshots(repo, { kind: 'postgres', asset });
  snapshots.catch(() => undefined); // awaited below
  repo.loadIndex().catch(() => undefined); // loaded again (or awaited) where it is needed
  const c = await connect(opts.conninfo);
  let started = false;
  let version = 0;
  try {
    const srv = await inspect(c);
    version = srv.version;
    if (srv.version < 130000) throw new PostgresError(`PostgreSQL ${srv.version} is not supported (13 or newer is)`);
    if (srv.inRecovery) throw new PostgresError('the server is a standby; take snapshots on the primary', { hint: 'point PGHOST/PGPORT at the primary' });
    if (srv.archiveMode === 'off' && opts.archiveCheck !== false) {
      throw new PostgresError('archive_mode is off: a snapshot without archived WAL cannot be restored', {
        hint: "set archive_mode = on and archive_command = 'ferry wal push %p' (restart needed), or pass --no-archive-check",
      });
    }
    const pgdata = resolve(opts.pgdata ?? srv.dataDirectory);
    if ((await realpath(pgdata).catch(() => pgdata)) !== (await realpath(srv.dataDirectory).catch(() => srv.dataDirectory))) {
      throw new ConfigError(`--pgdata ${pgdata} is not the server's data directory (${srv.dataDirectory})`, { hint: 'Ferry reads the data directory directly: run it on the database host' });
    }
    const label = `ferry ${new Date(repo.clock.now()).toISOString()}`;
    const startTime = new Date(repo.clock.now()).toISOString();
    const start = await queryOne<{ lsn: string }>(
      c,
      srv.version >= 150000 ? 'SELECT pg_backup_start($1, true)::text AS lsn' : 'SELECT pg_start_backup($1, true, false)::text AS lsn',
      [label],
    );
    started = true;
    const timeline = Number((await queryOne<{ tli: string }>(c, 'SELECT timeline_id::text AS tli FROM pg_control_checkpoint()')).tli);
    const startLsn = parseLsn(start.lsn);
    let fingerprint: Awaited<ReturnType<typeof fingerprintCluster>> | undefined;
    const tablespaces = (
      await c.query<{ oid: string; name: string; location: string }>("SELECT oid::text, spcname AS name, pg_tablespace_location(oid) AS location FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')")
    ).rows.map((t) => ({ oid: Number(t.oid), name: t.name, location: t.location }));
    const extraRoots: { prefix: string; root: string }[] = [];
    for (const t of tablespaces) {
      const link = join(pgdata, 'pg_tblspc', String(t.oid));
      const target = await readlink(link).catch(() => t.location);
      extraRoots.push({ prefix: `pg_tblspc/${t.oid}`, root: target });
    }

    const parent = (await snapshots).filter((s) => (s.manifest.meta as unknown as PgSnapshotMeta | undefined)?.systemIdentifier === srv.systemIdentifier).at(-1);
    // Chunks of a relation's main fork whose pages are all older than the parent's start LSN
    // are the parent's (pg_probackup's DELTA mode does the same): every WAL-logged change
    // stamps the page with an LSN at or after the checkpoint it follows, and a page that
    // changed since the parent started has one at or after that start. Only on the parent's
    // timeline and after its stop: a cluster that went back in time (a restore) writes
    // pages with LSNs below the parent's again.
    const pm = parent?.manifest.meta as unknown as PgSnapshotMeta | undefined;
    const olderThan = pm && pm.timeline === timeline && parseLsn(pm.stopLsn) <= startLsn ? parseLsn(pm.startLsn) : undefined;
    const checksumFailures: { file: string; block: number }[] = [];
    const suspects: { node: TreeNode; block: number }[] = [];
    const pathOf = (rel: string) => {
      const x = extraRoots.find((r) => rel.startsWith(r.prefix + '/'));
      return x ? join(x.root, rel.slice(x.prefix.length + 1)) : join(pgdata, rel);
    };
    let stop: { lsn: string; labelfile: string; spcmapfile: string } | undefined;
    let ready: Promise<[void, Awaited<ReturnType<typeof fingerprintCluster>> | undefined]> | undefined;
    let stopTime = '';

    const result = await backupTree(repo, {
      root: pgdata,
      extraRoots,
      kind: 'postgres',
      asset,
      labels: opts.labels,
      parent,
      exclude: excludeFromSnapshot,
      chunkerFor: (n, prev) => chunkerFor(n.path, () => repo.newChunker(), prev?.lengths),
      inspect: srv.dataChecksums
        ? (node, offset, chunk) => {
            if (!isRelationFile(node.path)) return;
            for (const block of badPages(chunk, offset, relationSegment(node.path) ?? 0, startLsn)) suspects.push({ node, block });
          }
        : undefined,
      unchanged: olderThan !== undefined ? (node, offset, chunk) => offset % BLCKSZ === 0 && isMainFork(node.path) && pagesOlderThan(chunk, olderThan) : undefined,
      extraFiles: async () => {
        // A page that fails may have been read while PostgreSQL was writing it (a torn read):
        // read it again; only a page that still fails (and was not rewritten since the
        // backup started) is reported. The stored torn copy is harmless: a page written
        // after the start checkpoint is restored from its full-page image in the WAL.
        for (const { node, block } of suspects) {
          if (!(await stillBad(pathOf(node.path), block, relationSegment(node.path) ?? 0, startLsn))) continue;
          checksumFailures.push({ file: node.path, block });
          node.extra = { ...(node.extra ?? {}), badBlocks: [...((node.extra?.badBlocks as number[]) ?? []), block] };
        }
        const r = await queryOne<{ lsn: string; labelfile: string; spcmapfile: string | null }>(
          c,
          // wait_for_archive => false: PostgreSQL would wait forever on a failing archive_command;
          // Ferry waits itself, with a timeout, for the WAL to reach this repository.
          srv.version >= 150000 ? 'SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)' : 'SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)',
        );
        started = false;
        stopTime = new Date(repo.clock.now()).toISOString();
        stop = { lsn: r.lsn, labelfile: r.labelfile, spcmapfile: r.spcmapfile ?? '' };
        const stopWal = segmentName(timeline, lsnSegno(parseLsn(r.lsn), srv.walSegmentSize), srv.walSegmentSize);
        // The snapshot's tree and last pack are stored while archive_command delivers the stop
        // segment and the fingerprint is taken; the manifest waits for both (meta, below).
        ready = Promise.all([
          opts.archiveCheck !== false ? waitForWal(repo, c, stopWal, opts.archiveTimeoutMs ?? 120_000) : undefined,
          opts.fingerprint === false ? undefined : fingerprintCluster(opts.conninfo),
        ]);
        ready.catch(() => undefined); // awaited in meta
        const files = [{ path: 'backup_label', data: Buffer.from(r.labelfile), mode: 0o600 }];
        if (r.spcmapfile) files.push({ path: 'tablespace_map', data: Buffer.from(r.spcmapfile), mode: 0o600 });
        return files;
      },
      meta: async () => {
        [, fingerprint] = await ready!;
        const s = stop!;
        const m: PgSnapshotMeta = {
          systemIdentifier: srv.systemIdentifier,
          serverVersion: srv.version,
          timeline,
          walSegmentSize: srv.walSegmentSize,
          startLsn: start.lsn,
          stopLsn: s.lsn,
          startWal: segmentName(timeline, lsnSegno(startLsn, srv.walSegmentSize), srv.walSegmentSize),
          stopWal: segmentName(timeline, lsnSegno(parseLsn(s.lsn), srv.walSegmentSize), srv.walSegmentSize),
          startTime,
          stopTime,
          backupLabel: s.labelfile,
          tablespaceMap: s.spcmapfile,
          tablespaces,
          dataChecksums: srv.dataChecksums,
          checksumFailures,
          ...(fingerprint ? { fingerprint } : {}),
          dataDirectory: pgdata,
        };
        return m as unknown as Record<string, unknown>;
      },
      onProgress: opts.onProgress,
      saver: { compressionLevel: opts.compressionLevel ?? PG_COMPRESSION_LEVEL },
    });
    return { ...result, meta: result.manifest.meta as unknown as PgSnapshotMeta };
  } finally {
    if (started) {
      // The backup failed part way: end it so the server is not left in backup mode (it also ends with the session).
      await c.query(version >= 150000 ? 'SELECT pg_backup_stop(false)' : 'SELECT pg_stop_backup(false, false)').catch(() => undefined);
    }
    await c.end().catch(() => undefined);
  }
}

/** Reads one block of a relation segment file again and checks it; false when the file has shrunk past it. */
async function stillBad(path: string, block: number, segno: number, startLsn: bigint): Promise<boolean> {
  const offset = (block - segno * RELSEG_PAGES) * BLCKSZ;
  const page = Buffer.alloc(BLCKSZ);
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return false;
  try {
    const { bytesRead } = await fh.read(page, 0, BLCKSZ, offset);
    return bytesRead === BLCKSZ && badPages(page, offset, segno, startLsn).length > 0;
  } finally {
    await fh.close();
  }
}

/** Waits until a WAL segment is in the repository (archive_command pushed it); fails fast when archiving fails. */
async function waitForWal(repo: Repository, c: pg.Client, name: string, timeoutMs: number): Promise<void> {
  const key = walKey(name);
  const deadline = Date.now() + timeoutMs;
  const hint = "check archive_command (it should run 'ferry wal push %p' into this repository, as the database OS user) and the server log; or pass --no-archive-check";
  // archive_command usually delivers the segment within a few hundred ms, and a snapshot waits
  // for it at its very end: the repository is polled every 10 ms (50 ms on a remote one: each
  // poll is a request) for the first 2 s, then less often; the archiver's view (a query) at
  // the start and then every 10th poll. Only failures after the wait began count: the
  // archiver's counters still show the failures of a command fixed a moment ago (and
  // PostgreSQL retries a segment three times, a second apart, once it is ready).
  const first = repo.storage.capabilities.remote ? 50 : 10;
  const start = Date.now();
  let failedBefore: number | undefined;
  for (let poll = 0; ; poll++) {
    if (await repo.storage.stat(key)) return;
    const waited = Date.now() - start;
    if (poll === 0 || poll % 10 === 9 || waited > 2000) {
      const a = (await c.query<{ failed: string | null; failures: string; last_failed: Date | null; last_ok: Date | null }>(
        'SELECT last_failed_wal AS failed, failed_count::text AS failures, last_failed_time AS last_failed, last_archived_time AS last_ok FROM pg_stat_archiver',
      )).rows[0];
      failedBefore ??= Number(a.failures);
      const failures = Number(a.failures) - failedBefore;
      const failing = a.failed !== null && a.failed <= name && (!a.last_ok || (a.last_failed && a.last_failed > a.last_ok));
      if (failing && failures >= 3) {
        throw new PostgresError(`archive_command is failing (segment ${a.failed}, ${failures} failures while this snapshot waited), so WAL segment ${name} needed by this snapshot cannot reach ${repo.location}`, { hint });
      }
    }
    if (Date.now() > deadline) {
      throw new PostgresError(`WAL segment ${name}, needed to make the snapshot consistent, did not reach ${repo.location} within ${Math.round(timeoutMs / 1000)} s`, { hint });
    }
    const delay = waited < 2000 ? first : Math.min(1000, Math.round(waited / 10));
    await new Promise((r) => setTimeout(r, delay));
  }
}
