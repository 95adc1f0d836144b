/**
 * Throwaway PostgreSQL clusters that Ferry itself starts: the demo's database,
 * scratch instances for table restores, drill restores. Created with initdb in a
 * directory of the caller's, run as the `postgres` OS user when Ferry runs as
 * root, reachable over a unix socket in the data directory, and always stopped
 * by data directory (pg_ctl -D), never by name.
 */
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { osUser, pgBinDir, runPg } from './binaries.ts';

export interface ScratchCluster {
  dataDir: string;
  port: number;
  socketDir: string;
  binDir: string;
  conninfo: string;
  /** libpq environment for programs such as pgbench and psql. */
  env: NodeJS.ProcessEnv;
  runAs: { uid?: number; gid?: number };
  start(): Promise<void>;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function pgEnvWithout(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('PG')) delete env[k];
  return env;
}

/** Handle on a data directory (existing or new) that Ferry starts and stops. */
export function clusterAt(dataDir: string, port: number, binDir = pgBinDir()): ScratchCluster {
  const runAs = process.getuid?.() === 0 ? osUser('postgres') : {};
  const env = { ...pgEnvWithout(), PGHOST: dataDir, PGPORT: String(port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
  return {
    dataDir,
    port,
    socketDir: dataDir,
    binDir,
    conninfo: `postgresql://postgres@/postgres?host=${encodeURIComponent(dataDir)}&port=${port}`,
    env,
    runAs,
    start: async () => {
      await runPg(join(binDir, 'pg_ctl'), ['-D', dataDir, '-l', join(dataDir, 'server.log'), '-w', '-t', '300', '-o', `-p ${port} -k ${dataDir} -c listen_addresses=''`, 'start'], { ...runAs, env: pgEnvWithout() });
    },
    stop: async (mode = 'fast') => {
      await runPg(join(binDir, 'pg_ctl'), ['-D', dataDir, '-m', mode, '-w', 'stop'], { ...runAs, env: pgEnvWithout() }).catch(() => undefined);
    },
  };
}

/** initdb (with data checksums) and start a new cluster in `dataDir`, with extra postgresql.conf lines. */
export async function createScratchCluster(dataDir: string, opts: { conf?: string[]; port?: number } = {}): Promise<ScratchCluster> {
  const binDir = pgBinDir();
  const port = opts.port ?? (await freePort());
  const c = clusterAt(dataDir, port, binDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (c.runAs.uid !== undefined) await chown(dataDir, c.runAs.uid, c.runAs.gid!);
  await chmod(dataDir, 0o700);
  await runPg(join(binDir, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--data-checksums', '--no-sync', '-E', 'UTF8', '--locale=C'], { ...c.runAs, env: pgEnvWithout() });
  const conf = ["listen_addresses = ''", 'wal_level = replica', 'max_wal_senders = 4', 'shared_buffers = 64MB', ...(opts.conf ?? [])];
  await writeFile(join(dataDir, 'postgresql.conf'), '\n' + conf.join('\n') + '\n', { flag: 'a' });
  await c.start();
  return c;
}
