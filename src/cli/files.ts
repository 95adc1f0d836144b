/** `ferry files snapshot|restore`: directory trees. */
import { basename, resolve } from 'node:path';
import { backupTree } from '../repo/backup.ts';
import { withLock } from '../repo/lock.ts';
import { listSnapshots, resolveSnapshot } from '../repo/manifest.ts';
import { restoreTree } from '../repo/restore.ts';
import { recordedRun } from '../repo/runs.ts';
import { hostname } from 'node:os';
import { bytes, duration } from '../util/format.ts';
import { backupProgressLine, seconds, str, strs, type Command } from './command.ts';

const snapshot: Command = {
  name: 'files snapshot',
  summary: 'snapshot a directory tree (only new and changed files are read)',
  usage: 'DIR [--asset NAME] [--label L]... [--force] [--lock-wait SECONDS]',
  description: 'Waits up to --lock-wait seconds (default 600) for a prune holding the exclusive lock to finish.',
  options: { asset: { type: 'string' }, label: { type: 'string', multiple: true }, force: { type: 'boolean' }, 'lock-wait': { type: 'string' } },
  args: [1, 1],
  async run(ctx, { positionals, values }) {
    const root = resolve(positionals[0]);
    const asset = str(values.asset) ?? `${hostname()}:${root}`;
    const lockWait = seconds(str(values['lock-wait']), 600, '--lock-wait');
    const repo = await ctx.repo();
    const { id, manifest } = await recordedRun(
      repo,
      { job: 'files snapshot', asset },
      () =>
        withLock(
          repo,
          `files snapshot ${root}`,
          false,
          async () => {
            const prior = await listSnapshots(repo, { kind: 'files', asset });
            return backupTree(repo, {
              root,
              kind: 'files',
              asset,
              labels: strs(values.label),
              parent: prior.at(-1),
              force: !!values.force,
              onProgress: (p) => ctx.progress.update(backupProgressLine(p)),
            });
          },
          lockWait,
        ),
      (r) => ({ bytes: r.manifest.stats.storedBytes, snapshot: r.id }),
    );
    ctx.progress.done();
    const s = manifest.stats;
    ctx.out({ id, ...manifest, tree: undefined }, () =>
      [
        `snapshot ${id.slice(0, 12)} of ${root} saved`,
        `  ${s.files} files (${s.filesRead} read, ${s.filesUnchanged} unchanged), ${s.dirs} dirs, ${s.symlinks} symlinks, ${bytes(s.bytes)}`,
        `  added ${bytes(s.newBytes)} of new data, ${bytes(s.storedBytes)} stored, in ${duration(s.durationMs)}`,
      ].join('\n'),
    );
  },
};

const restore: Command = {
  name: 'files restore',
  summary: 'restore a snapshot into a directory (refuses a non-empty one without --delta or --force)',
  usage: 'ID|latest TARGET [--asset NAME] [--delta] [--force] [--include PATH]...',
  options: { asset: { type: 'string' }, delta: { type: 'boolean' }, force: { type: 'boolean' }, include: { type: 'string', multiple: true } },
  args: [2, 2],
  async run(ctx, { positionals, values }) {
    const repo = await ctx.repo();
    repo.startCodec(); // they boot while the snapshot is resolved
    const target = resolve(positionals[1]);
    const ref = await resolveSnapshot(repo, positionals[0], { asset: str(values.asset) });
    const includes = strs(values.include).map((p) => p.replace(/^\/+|\/+$/g, ''));
    const started = Date.now();
    const r = await withLock(repo, `files restore ${basename(target)}`, false, () =>
      restoreTree(repo, ref.manifest, target, {
        delta: !!values.delta,
        force: !!values.force,
        ...(includes.length ? { include: (n) => includes.some((i) => n.path === i || n.path.startsWith(i + '/') || i.startsWith(n.path + '/')) } : {}),
        onProgress: (p) => ctx.progress.update(`restored ${p.filesDone}/${p.filesTotal} files  ${bytes(p.bytesDone)}/${bytes(p.bytesTotal)}`),
      }),
    );
    ctx.progress.done();
    ctx.out({ snapshot: ref.id, target, ...r, durationMs: Date.now() - started }, () =>
      `restored snapshot ${ref.id.slice(0, 12)} to ${target}: ${r.files} files, ${bytes(r.bytes)} (${bytes(r.bytesWritten)} written${r.removed ? `, ${r.removed} extra paths removed` : ''}) in ${duration(Date.now() - started)}`,
    );
  },
};

export const filesCommands: Command[] = [snapshot, restore];

