/**
 * A PostgreSQL cluster archiving into a Ferry repository with `archive_command =
 * ferry wal push %p`, as a user sets it up: repository and key file owned by the
 * postgres OS user, absolute paths in archive_command. Also helpers to reach and
 * stop servers that `ferry pg restore --start` started.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';
import { FERRY, ferryOk } from './cli.ts';
import { pgBinDir, startCluster, type StartClusterOptions, type TestCluster } from './pg.ts';
import { asPostgres, chownToPostgres, makeTempDir, onExitStop, type TempDir } from './tmp.ts';
import { restoreSpool } from '../../src/postgres/restore.ts';
import { FETCH_WORKER_MARKER, runningWorkerPid, spoolLayout } from '../../src/postgres/wal-async.ts';

export interface ArchivedCluster {
  cluster: TestCluster;
  tmp: TempDir;
  repo: string;
  keyFile: string;
  /** Environment for `ferry` commands against this cluster and repository. */
  env: Record<string, string>;
  destroy(): Promise<void>;
}

export async function archivedCluster(opts: StartClusterOptions = {}): Promise<ArchivedCluster> {
  const tmp = makeTempDir('ferry-arch-', { forPostgres: true });
  const repo = join(tmp.path, 'repo');
  const keyFile = join(tmp.path, 'ferry.key');
  await ferryOk(['init', '--key-file', keyFile], { env: { FERRY_REPO: repo } });
  await chownToPostgres(tmp.path);
  const archiveCommand = `FERRY_REPO=${repo} FERRY_KEY_FILE=${keyFile} ${FERRY} wal push %p`;
  const cluster = await startCluster({
    initdbArgs: ['--data-checksums'],
    ...opts,
    conf: ['archive_mode = on', `archive_command = '${archiveCommand}'`, 'wal_level = replica', ...(opts.conf ?? [])],
  });
  const env = { FERRY_REPO: repo, FERRY_KEY_FILE: keyFile, ...cluster.env };
  return {
    cluster,
    tmp,
    repo,
    keyFile,
    env,
    destroy: async () => {
      await cluster.destroy();
      tmp.cleanup();
    },
  };
}

/** Waits until PostgreSQL reports WAL file `name` (or a later one) archived. */
export async function waitArchived(c: TestCluster, name: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [s] = await c.query<{ last: string | null; failed: string | null; fc: string }>(
      'SELECT last_archived_wal AS last, last_failed_wal AS failed, failed_count AS fc FROM pg_stat_archiver',
    );
    if (s.last && s.last >= name) return;
    if (Date.now() > deadline) throw new Error(`${name} not archived in ${timeoutMs} ms (last ${s.last}, failed ${s.failed} x${s.fc})\n${c.logTail(30)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Forces the current WAL segment out and waits until it is archived. */
export async function switchAndWaitArchived(c: TestCluster, timeoutMs = 60_000): Promise<string> {
  // A WAL record first, so the switch always closes a segment that has something in it.
  await c.query("SELECT pg_logical_emit_message(false, 'ferry-test', 'switch')");
  const [{ name }] = await c.query<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name');
  await waitArchived(c, name, timeoutMs);
  return name;
}

/** A client for a server `ferry pg restore --start` started (socket in its data directory). */
export async function restoredClient(dataDir: string, port: number, database = 'postgres'): Promise<pg.Client> {
  const c = new pg.Client({ host: dataDir, port, user: 'postgres', database });
  await c.connect();
  return c;
}

/**
 * Stops a server by its data directory (never by name), as the postgres user, and then the
 * fetch worker its restore_command started (by the pid in the spool `ferry pg restore` puts in
 * pg_wal): a restore without --start leaves that worker to exit 30 s after the last fetch.
 */
export function stopDataDir(dataDir: string): void {
  try {
    execFileSync(join(pgBinDir(), 'pg_ctl'), ['-D', dataDir, '-m', 'fast', '-w', 'stop'], { ...asPostgres(), stdio: 'ignore' });
  } catch {
    /* not running */
  }
  stopRestoreFetchWorker(dataDir);
}

/** SIGTERM to the fetch worker of a restored directory's spool, if one runs (checked by its command line). */
export function stopRestoreFetchWorker(dataDir: string): void {
  const pid = runningWorkerPid(spoolLayout(restoreSpool(dataDir)).fetchPid, FETCH_WORKER_MARKER);
  try {
    if (pid !== undefined) process.kill(pid, 'SIGTERM');
  } catch {
    /* gone meanwhile */
  }
}

/** Registers a restored data directory to be stopped at exit even if a test fails. */
export function stopAtExit(dataDir: string): void {
  onExitStop(() => stopDataDir(dataDir));
}

/** The ids in table `markers` of a restored server, in order (the PITR tests' witness rows). */
export async function markerIds(dataDir: string, port: number): Promise<number[]> {
  const c = await restoredClient(dataDir, port);
  try {
    return (await c.query<{ id: number }>('SELECT id FROM markers ORDER BY id')).rows.map((r) => r.id);
  } finally {
    await c.end();
  }
}
