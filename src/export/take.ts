/**
 * Taking a compliance export: `pg_dump -Fc -Z0` streamed through the repository's
 * content-defined chunker into blobs, stored as a one-file tree under a manifest of
 * kind `export`.
 *
 * `-Z0` on purpose: pg_dump's own compression would turn a few changed rows into a
 * different byte stream from there to the end of the table, so week-to-week exports
 * would not dedup. Ferry compresses each chunk with zstd instead.
 *
 * Write order as for every snapshot (durability rule 2): blobs, then index (the
 * saver's flush), then the manifest, and only when pg_dump exited 0.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fileChecksum } from '../codec/hash.ts';
import { pgBinDir, runPg } from '../postgres/binaries.ts';
import { clientConfigFromEnv, connectClient } from '../postgres/conninfo.ts';
import { newManifest, writeManifest, type Manifest } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { BlobSaver } from '../repo/saver.ts';
import { saveTree, type TreeNode } from '../repo/tree.ts';
import { PostgresError } from '../util/errors.ts';
import { exitText, watchChild } from './child.ts';
import { EXPORT_FILE, EXPORT_KIND, type ExportMeta } from './meta.ts';

export interface TakeExportOptions {
  /** Database to dump; default PGDATABASE (libpq's default otherwise). */
  database?: string;
  labels?: string[];
  /** libpq environment for pg_dump and the version query; default process.env. */
  env?: NodeJS.ProcessEnv;
  onProgress?: (bytesRead: number, storedBytes: number) => void;
}

export interface TakenExport {
  id: string;
  manifest: Manifest;
  meta: ExportMeta;
}

/** Bytes gathered from pg_dump's pipe before they are cut into chunks. */
const SLICE = 4 * 1024 * 1024;

interface ServerFacts {
  database: string;
  serverVersion: string;
  serverVersionNum: number;
}

async function serverFacts(env: NodeJS.ProcessEnv, database: string | undefined): Promise<ServerFacts> {
  const where = `${env.PGHOST ?? 'localhost'}:${env.PGPORT ?? '5432'}${database ? ` database "${database}"` : ''}`;
  const client = await connectClient({ ...clientConfigFromEnv(env), ...(database !== undefined ? { database } : {}) }, `PostgreSQL at ${where} to export it`, 'set PGHOST/PGPORT/PGUSER/PGDATABASE (or pass --database) to reach the database');
  try {
    const r = await client.query<{ db: string; v: string; n: string }>(
      "SELECT current_database() AS db, current_setting('server_version') AS v, current_setting('server_version_num') AS n",
    );
    return { database: r.rows[0].db, serverVersion: r.rows[0].v, serverVersionNum: Number(r.rows[0].n) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** `pg_dump (PostgreSQL) 15.8 (Debian 15.8-1)` -> `15.8`. */
export function parseToolVersion(text: string): string {
  const m = /\(PostgreSQL\)\s+(\d+(?:\.\d+)*)/.exec(text) ?? /(\d+(?:\.\d+)+)/.exec(text);
  return m ? m[1] : text.trim();
}

export async function takeExport(repo: Repository, opts: TakeExportOptions = {}): Promise<TakenExport> {
  const started = repo.clock.now();
  const baseEnv = opts.env ?? process.env;
  const facts = await serverFacts(baseEnv, opts.database);
  const bin = join(pgBinDir(Math.floor(facts.serverVersionNum / 10000)), 'pg_dump');
  const pgDumpVersion = parseToolVersion((await runPg(bin, ['--version'])).stdout);
  // The database goes in through the environment: a name is never read as a connection string.
  const env = { ...baseEnv, PGDATABASE: facts.database };
  await repo.loadIndex();

  const child = spawn(bin, ['--format=custom', '--compress=0', '--no-password'], { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' });
  const { exited, said } = watchChild(child, bin);

  const saver = new BlobSaver(repo);
  const chunker = repo.newChunker();
  const sha = createHash('sha256');
  const saves: Promise<string>[] = [];
  const lengths: number[] = [];
  let size = 0;
  let waitFrom = 0;
  let pieces: Buffer[] = [];
  let piecesLen = 0;
  let carry: Buffer | undefined;
  const cut = async (eof: boolean) => {
    const buf = Buffer.concat(carry ? [carry, ...pieces] : pieces);
    pieces = [];
    piecesLen = 0;
    const { chunks, rest } = chunker.split(buf, eof);
    for (const c of chunks) {
      lengths.push(c.length);
      const p = saver.save('data', c);
      p.catch(() => undefined); // observed below, in order
      saves.push(p);
    }
    carry = rest.length ? rest : undefined;
    // Keep memory bounded: do not read far ahead of the saver.
    while (saves.length - waitFrom > 8) await saves[waitFrom++];
  };
  const timer = opts.onProgress ? setInterval(() => opts.onProgress!(size, saver.stats.storedBytes), 200) : undefined;
  try {
    try {
      for await (const d of child.stdout as AsyncIterable<Buffer>) {
        sha.update(d);
        size += d.length;
        pieces.push(d);
        piecesLen += d.length;
        if (piecesLen >= SLICE) await cut(false);
      }
      await cut(true);
    } catch (e) {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited.catch(() => undefined);
      throw e;
    }
    const exit = await exited;
    if (exit.code !== 0) {
      // What was stored is referenced by nothing; prune reclaims it.
      await Promise.allSettled(saves);
      await saver.flush().catch(() => undefined);
      throw new PostgresError(`pg_dump of database "${facts.database}" failed (${exitText(exit)}): ${said() || 'no message'}`, {
        hint: 'no export was written; fix the cause pg_dump names and run it again',
      });
    }
    const ids = await Promise.all(saves);
    const nowNs = `${BigInt(repo.clock.now()) * 1_000_000n}`;
    const nodes: TreeNode[] = [
      { path: '', type: 'dir', mode: 0o700, mtimeNs: nowNs, size: 0, uid: 0, gid: 0, ino: 0 },
      { path: EXPORT_FILE, type: 'file', mode: 0o600, mtimeNs: nowNs, size, uid: 0, gid: 0, ino: 0, blobs: ids, lengths, checksum: fileChecksum(ids) },
    ];
    const tree = await saveTree(saver, repo, nodes);
    await saver.flush();
    const end = repo.clock.now();
    const meta: ExportMeta = {
      database: facts.database,
      serverVersion: facts.serverVersion,
      serverVersionNum: facts.serverVersionNum,
      pgDumpVersion,
      format: 'custom',
      file: EXPORT_FILE,
      size,
      sha256: sha.digest('hex'),
      time: new Date(end).toISOString(),
      tier: 'hot',
    };
    const manifest = newManifest(
      repo,
      started,
      saver.stats,
      {
        kind: EXPORT_KIND,
        asset: facts.database,
        paths: [],
        labels: opts.labels ?? [],
        tree,
        stats: { files: 1, dirs: 1, symlinks: 0, bytes: size, filesRead: 1, filesUnchanged: 0 },
        meta: meta as unknown as Record<string, unknown>,
      },
      end,
    );
    const id = await writeManifest(repo, manifest);
    return { id, manifest, meta };
  } finally {
    if (timer) clearInterval(timer);
  }
}
