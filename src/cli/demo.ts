/**
 * `ferry demo`: the main job on an embedded default, end to end, in a temporary
 * directory: a repository, a data set, snapshots, a restore verified byte for
 * byte, and a full read-back check. Nothing outside the temporary directory is touched.
 */
import { mkdtemp, mkdir, writeFile, readFile, rm, symlink, appendFile } from 'node:fs/promises';
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
      ctx.say('demo finished: snapshot, incremental snapshot, restore and verification all passed');
      await storage.close();
    } finally {
      if (values.keep) ctx.say(`kept ${base}`);
      else await rm(base, { recursive: true, force: true });
    }
  },
};

export const demoCommands: Command[] = [demo];
