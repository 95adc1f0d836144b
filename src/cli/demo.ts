/**
 * `ferry demo`: the main job on an embedded default, end to end, in a temporary
 * directory: a repository, a data set, snapshots, a restore verified byte for
 * byte, and a full read-back check. Nothing outside the temporary directory is touched.
 */
import { mkdtemp, mkdir, writeFile, readFile, rm, symlink, appendFile, chmod, chown } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { Repository } from '../repo/repository.ts';
import { backupTree, walkTree } from '../repo/backup.ts';
import { restoreTree } from '../repo/restore.ts';
import { checkRepository } from '../repo/check.ts';
import { openStorage } from '../storage/open.ts';
import { FerryError } from '../util/errors.ts';
import { bytes, duration } from '../util/format.ts';
import type { Command } from './command.ts';
import { newKeyFileText, readKeyFile } from '../codec/keys.ts';
import { clusterAt as clusterAtImpl, createScratchCluster, freePort, type ScratchCluster } from '../postgres/scratch.ts';
import { osUser, runPg } from '../postgres/binaries.ts';
import { takePgSnapshot } from '../postgres/snapshot.ts';
import { restorePg } from '../postgres/restore.ts';
import { connect } from '../postgres/connect.ts';
import { walKey } from '../postgres/walname.ts';
import { ferryCommand } from './pg.ts';
import { DEFAULT_MIN_ROWS, findIncidents } from '../incident/find.ts';
import { liveResolver } from '../incident/names.ts';
import { join as pjoin } from 'node:path';

/**
 * The PostgreSQL part of the demo: a throwaway cluster archiving WAL into a fresh
 * repository, a snapshot, an accidental DELETE without WHERE, the incident finder
 * naming that transaction in the archived WAL, and a point-in-time restore to just
 * before it, checked row for row.
 */
async function pgDemo(base: string, say: (s: string) => void): Promise<void> {
  const step = (s: string) => say(`==> ${s}`);
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? osUser('postgres') : undefined;
  await chmod(base, 0o755);
  const repoDir = pjoin(base, 'pg-repo');
  const keyFile = pjoin(base, 'ferry.key');
  await writeFile(keyFile, newKeyFileText(), { mode: 0o600 });
  step(`creating a repository at ${repoDir} (key file ${keyFile})`);
  const storage = openStorage(repoDir);
  const repo = await Repository.init(storage, readKeyFile(keyFile));
  if (owner) {
    for (const p of [keyFile, repoDir]) await chownTree(p, owner.uid, owner.gid);
  }
  const archiveCommand = `FERRY_REPO=${repoDir} FERRY_KEY_FILE=${keyFile} ${ferryCommand()} wal push %p`;
  step('starting a throwaway PostgreSQL with archive_command = ferry wal push %p');
  const clusters: ScratchCluster[] = [];
  try {
    const pg = await createScratchCluster(pjoin(base, 'pgdata'), { conf: ['archive_mode = on', `archive_command = '${archiveCommand}'`] });
    clusters.push(pg);
    await runPg(pjoin(pg.binDir, 'pgbench'), ['-i', '-s', '5', '-q'], { env: pg.env });
    let t = Date.now();
    const snap = await takePgSnapshot(repo, { conninfo: pg.conninfo, pgdata: pg.dataDir });
    say(`    snapshot ${snap.id.slice(0, 12)}: ${bytes(snap.manifest.stats.bytes)} data directory, ${bytes(snap.manifest.stats.storedBytes)} stored, in ${duration(Date.now() - t)} (LSN ${snap.meta.startLsn} .. ${snap.meta.stopLsn})`);
    step('the application keeps writing (pgbench for 3 s); then someone runs DELETE FROM pgbench_accounts without WHERE');
    await runPg(pjoin(pg.binDir, 'pgbench'), ['-c', '2', '-T', '3', '-n'], { env: pg.env });
    const c = await connect(pg.conninfo);
    const good = (await c.query<{ n: string; t: string }>("SELECT count(*)::text AS n, to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US+00') AS t FROM pgbench_accounts")).rows[0];
    await new Promise((r) => setTimeout(r, 500));
    await c.query('DELETE FROM pgbench_accounts');
    await c.query("SELECT pg_logical_emit_message(false, 'ferry-demo', 'after the accident')");
    const seg = (await c.query<{ w: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS w')).rows[0].w;
    await c.end();
    say(`    ${good.n} rows at ${good.t}; 0 rows after the DELETE`);
    for (let i = 0; i < 300 && !(await repo.storage.stat(walKey(seg))); i++) await new Promise((r) => setTimeout(r, 100));
    step('ferry incident find --table public.pgbench_accounts: which transaction removed the rows, and when?');
    t = Date.now();
    const names = liveResolver((l) => say(`    warning: ${l}`), pg.conninfo);
    const found = await findIncidents(repo, {
      filter: { table: 'public.pgbench_accounts', op: 'delete', since: Date.parse(snap.meta.stopTime), minRows: DEFAULT_MIN_ROWS },
      since: Date.parse(snap.meta.stopTime),
      names,
    }).finally(() => names.close());
    const worst = found.transactions[0];
    if (!worst || !found.proposal) throw new FerryError('the incident finder did not find the DELETE in the archived WAL');
    for (const tx of found.transactions) {
      say(`    xid ${tx.xid} committed ${tx.commitTime} at LSN ${tx.lsn}: ${tx.tables.map((x) => `${x.op} ${x.rows ?? 'all'} rows of ${x.name}`).join(', ')}`);
    }
    say(`    (${found.scanned.segments} WAL segments decoded in ${duration(Date.now() - t)})`);
    step(`point-in-time restore to just before transaction ${found.proposal.xid} (pg restore --before-xid), into a new instance`);
    const port = await freePort();
    t = Date.now();
    const report = await restorePg(repo, {
      targetDir: pjoin(base, 'pg-restored'),
      target: { kind: 'xid', xid: String(found.proposal.xid) },
      exclusive: true,
      start: true,
      port,
      noArchive: true,
      ferryCommand: ferryCommand(),
      restoreEnv: { FERRY_REPO: repoDir, FERRY_KEY_FILE: keyFile },
    });
    const restored = clusterAtPort(pjoin(base, 'pg-restored'), port);
    clusters.push(restored);
    const rc = await connect(restored.conninfo);
    const n = (await rc.query<{ n: string }>('SELECT count(*)::text AS n FROM pgbench_accounts')).rows[0].n;
    await rc.end();
    say(`    restored and promoted in ${duration(Date.now() - t)}: ${report.reached?.stopLine ?? `LSN ${report.reached?.lsn}`}`);
    say(`    pgbench_accounts has ${n} rows (expected ${good.n}): ${n === good.n ? 'every row is back' : 'MISMATCH'}`);
    if (n !== good.n) throw new FerryError('the point-in-time restore did not bring back the deleted rows');
  } finally {
    await repo.close();
    await storage.close();
    for (const cl of clusters) await cl.stop('fast');
  }
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  const { lstat, readdir } = await import('node:fs/promises');
  await chown(path, uid, gid);
  if ((await lstat(path)).isDirectory()) for (const n of await readdir(path)) await chownTree(pjoin(path, n), uid, gid);
}

function clusterAtPort(dataDir: string, port: number): ScratchCluster {
  return clusterAtImpl(dataDir, port);
}

async function makeData(dir: string): Promise<void> {
  await mkdir(join(dir, 'app/config'), { recursive: true });
  await mkdir(join(dir, 'resumes/2026'), { recursive: true });
  for (let i = 0; i < 200; i++) await writeFile(join(dir, `resumes/2026/resume-${i}.txt`), `Candidate ${i}\n` + randomBytes(2048 + i * 37).toString('base64'));
  await writeFile(join(dir, 'app/config/settings.env'), 'DATABASE_URL=postgres://app@db/app\nFEATURE_X=on\n');
  await writeFile(join(dir, 'big.bin'), randomBytes(24 << 20));
  await writeFile(join(dir, 'empty'), '');
  await writeFile(join(dir, 'name with spaces ünïcode'), 'odd names work\n');
  await symlink('app/config/settings.env', join(dir, 'current.env'));
}

async function digestTree(dir: string): Promise<string> {
  const h = createHash('sha256');
  for (const n of await walkTree(dir)) {
    h.update(`${n.path}\0${n.type}\0${n.mode}\0${n.target ?? ''}\0`);
    if (n.type === 'file') h.update(await readFile(join(dir, n.path)));
  }
  return h.digest('hex');
}

const demo: Command = {
  name: 'demo',
  summary: 'run the main job end to end on a throwaway data set and repository',
  usage: '[--keep]',
  options: { keep: { type: 'boolean' } },
  async run(ctx, { values }) {
    const base = await mkdtemp(join(tmpdir(), 'ferry-demo-'));
    const step = (s: string) => ctx.say(`==> ${s}`);
    try {
      await pgDemo(base, (s) => ctx.say(s));
      const data = join(base, 'data');
      const storage = openStorage(join(base, 'repo'));
      step(`creating a repository at ${join(base, 'repo')}`);
      const repo = await Repository.init(storage, { kind: 'passphrase', passphrase: 'demo-passphrase' });
      step('writing a data set (200 small files, one 24 MiB file, a symlink, odd names)');
      await makeData(data);
      let t = Date.now();
      const first = await backupTree(repo, { root: data, kind: 'files', asset: 'demo' });
      ctx.say(`    first snapshot ${first.id.slice(0, 12)}: ${first.manifest.stats.files} files, ${bytes(first.manifest.stats.bytes)} in ${duration(Date.now() - t)}, stored ${bytes(first.manifest.stats.storedBytes)}`);
      step('changing 10 files and taking a second snapshot');
      for (let i = 0; i < 10; i++) await appendFile(join(data, `resumes/2026/resume-${i}.txt`), '\nupdated\n');
      t = Date.now();
      const second = await backupTree(repo, { root: data, kind: 'files', asset: 'demo', parent: first });
      ctx.say(`    second snapshot ${second.id.slice(0, 12)}: read ${second.manifest.stats.filesRead} files, stored ${bytes(second.manifest.stats.storedBytes)} in ${duration(Date.now() - t)}`);
      step('restoring the second snapshot into an empty directory and comparing');
      const target = join(base, 'restored');
      t = Date.now();
      await restoreTree(repo, second.manifest, target);
      const same = (await digestTree(data)) === (await digestTree(target));
      ctx.say(`    restored in ${duration(Date.now() - t)}: ${same ? 'identical to the source' : 'DIFFERENT from the source'}`);
      step('reading back and authenticating every byte (repo check --read-data)');
      const report = await checkRepository(repo, { readData: true });
      ctx.say(`    ${report.packs} packs, ${report.blobs} blobs, ${bytes(report.bytesRead)} read: ${report.ok ? 'no problems' : report.problems.map((p) => p.message).join('; ')}`);
      if (!same || !report.ok) throw new FerryError('the demo found a difference or a problem (see above)');
      ctx.say('demo finished: PostgreSQL snapshot, incident finder and point-in-time recovery, file snapshots, restore and verification all passed');
      await repo.close();
      await storage.close();
    } finally {
      if (values.keep) ctx.say(`kept ${base}`);
      else await rm(base, { recursive: true, force: true });
    }
  },
};

export const demoCommands: Command[] = [demo];
