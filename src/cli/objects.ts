/** `ferry objects snapshot | versions | restore | configure` and `ferry audit`: object files in S3-compatible buckets and directories. */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { assetsOf, type DirectoryAsset, type S3Asset } from '../config/assets.ts';
import { withLock } from '../repo/lock.ts';
import { listSnapshots, type SnapshotRef } from '../repo/manifest.ts';
import { isNonEmptyDir } from '../repo/restore.ts';
import { recordedRun } from '../repo/runs.ts';
import { auditAsset, type AssetAudit } from '../objects/audit.ts';
import type { SettingResult } from '../objects/bucket.ts';
import { chooseVersion, objectSnapshots, objectVersions, parseTime, readNode, restorePrefix, snapshotAt, writeLocal } from '../objects/history.ts';
import { snapshotObjects, type ObjectsMeta } from '../objects/snapshot.ts';
import { openSource, type ObjectSource } from '../objects/source.ts';
import { ConfigError, FerryError, UsageError, errorMessage } from '../util/errors.ts';
import { bytes, duration, table } from '../util/format.ts';
import { onStopSignals, seconds, str, strs, type Command } from './command.ts';
import { setTimeout } from 'node:timers/promises';
import type { Context } from './context.ts';
import { commandClock } from './expire.ts';

/** The `s3` or `directory` asset called `name`. */
function objectAsset(ctx: Context, name: string): S3Asset | DirectoryAsset {
  const all = assetsOf(ctx.settings);
  const a = all.find((x) => x.name === name);
  if (!a) {
    const some = all.filter((x) => x.type === 's3' || x.type === 'directory').map((x) => x.name);
    throw new ConfigError(`no asset named "${name}" in ${ctx.settings.configPath ?? 'ferry.yaml (none found)'}`, {
      hint: some.length ? `s3 and directory assets: ${some.join(', ')}` : 'add one under assets: with type: s3 or type: directory',
    });
  }
  if (a.type !== 's3' && a.type !== 'directory') throw new ConfigError(`asset "${name}" is of type ${a.type}; \`ferry objects\` works on s3 and directory assets`);
  return a;
}

/** Relative paths in ferry.yaml are relative to its folder. */
function baseDir(ctx: Context): string {
  return ctx.settings.configPath ? dirname(resolve(ctx.settings.configPath)) : process.cwd();
}

interface RoundResult {
  id: string;
  time: string;
  meta: ObjectsMeta;
  objects: number;
  bytes: number;
  storedBytes: number;
  durationMs: number;
}

async function snapshotRound(ctx: Context, asset: S3Asset | DirectoryAsset, source: ObjectSource, labels: string[], lockWait: number): Promise<RoundResult> {
  const repo = await ctx.repo();
  const { id, manifest } = await recordedRun(
    repo,
    { job: 'objects snapshot', asset: asset.name },
    () =>
      withLock(
        repo,
        `objects snapshot ${asset.name}`,
        false,
        async () => {
          const parent = (await objectSnapshots(repo, asset.name)).at(-1);
          return snapshotObjects(repo, source, {
            asset: asset.name,
            parent,
            labels,
            onProgress: (p) => ctx.progress.update(`objects ${p.objectsDone}/${p.objectsTotal}  ${p.objectsRead >= 0 ? `read ${p.objectsRead}, ` : ''}${bytes(p.bytesRead)}`),
          });
        },
        lockWait,
      ),
    (r) => ({ bytes: r.manifest.stats.storedBytes, snapshot: r.id, details: { ...(r.manifest.meta as Record<string, unknown>), deletedKeys: undefined } }),
  );
  ctx.progress.done();
  const meta = manifest.meta as unknown as ObjectsMeta;
  return { id, time: meta.listedAt, meta, objects: manifest.stats.files, bytes: manifest.stats.bytes, storedBytes: manifest.stats.storedBytes, durationMs: manifest.stats.durationMs };
}

function roundLine(asset: string, r: RoundResult): string {
  const m = r.meta;
  return `snapshot ${r.id.slice(0, 12)} of ${asset}: ${r.objects} objects, ${bytes(r.bytes)} (${m.added} new, ${m.changed} changed, ${m.deleted} deleted, ${m.unchanged} unchanged), ${bytes(r.storedBytes)} stored in ${duration(r.durationMs)}`;
}

const snapshot: Command = {
  name: 'objects snapshot',
  summary: 'snapshot a bucket prefix or directory (only new or changed objects are read; deletions recorded)',
  usage: 'NAME [--watch [--interval S]] [--label L]... [--lock-wait S] [--json]',
  description: [
    'NAME is an s3 or directory asset of ferry.yaml. An object is read when it is new or its ETag (S3) or size and mtime (directory) changed.',
    '--watch snapshots again every --interval seconds (default 60) and reports each round\'s RPO: the interval plus the time the round took to store.',
    'It stops after the current round on SIGINT or SIGTERM (a second signal stops at once). A failed first round stops it; later failures are retried.',
    'With --json, one JSON object per line per round.',
  ].join('\n'),
  options: { watch: { type: 'boolean' }, interval: { type: 'string' }, label: { type: 'string', multiple: true }, 'lock-wait': { type: 'string' } },
  args: [1, 1],
  async run(ctx, { positionals, values }) {
    const asset = objectAsset(ctx, positionals[0]);
    const lockWait = seconds(str(values['lock-wait']), 600, '--lock-wait');
    if (values.interval !== undefined && !values.watch) throw new UsageError('--interval is only used with --watch');
    const interval = seconds(str(values.interval), 60, '--interval');
    if (values.watch && interval <= 0) throw new UsageError('--interval must be more than 0 seconds');
    const source = await openSource(asset, baseDir(ctx));
    try {
      if (!values.watch) {
        const r = await snapshotRound(ctx, asset, source, strs(values.label), lockWait);
        ctx.out(r, () => roundLine(asset.name, r));
        return 0;
      }
      return await watch(ctx, asset, source, strs(values.label), lockWait, interval);
    } finally {
      await source.close();
    }
  },
};

async function watch(ctx: Context, asset: S3Asset | DirectoryAsset, source: ObjectSource, labels: string[], lockWait: number, interval: number): Promise<number> {
  const stop = onStopSignals();
  let rounds = 0;
  let failures = 0;
  try {
    while (!stop.signal.aborted) {
      const t0 = Date.now();
      try {
        const r = await snapshotRound(ctx, asset, source, labels, lockWait);
        const storeMs = Date.now() - t0;
        const rpoMs = interval + storeMs;
        rounds++;
        if (ctx.json) process.stdout.write(JSON.stringify({ round: rounds, ...r, storeMs, rpoMs }) + '\n');
        else ctx.say(`${roundLine(asset.name, r)}; RPO ${duration(rpoMs)} (interval ${duration(interval)} + ${duration(storeMs)} to store)`);
      } catch (e) {
        // A first round that fails is a setup problem (config, key, credentials): stop. Later ones are retried.
        if (rounds === 0) throw e;
        failures++;
        ctx.progress.done();
        ctx.warn(`snapshot of ${asset.name} failed, retrying in ${duration(interval)}: ${errorMessage(e)}`);
        if (ctx.json) process.stdout.write(JSON.stringify({ round: rounds + failures, error: errorMessage(e) }) + '\n');
      }
      if (stop.signal.aborted) break;
      await setTimeout(interval, undefined, { signal: stop.signal }).catch(() => undefined);
    }
  } finally {
    stop.dispose();
  }
  ctx.say(`stopped watching ${asset.name} after ${rounds} snapshot${rounds === 1 ? '' : 's'}${failures ? ` (${failures} failed rounds)` : ''}`);
  return 0;
}

const versions: Command = {
  name: 'objects versions',
  summary: 'every version of an object seen across snapshots (and when it was deleted)',
  usage: 'NAME KEY [--json]',
  description: 'VERSION is the first 12 hex digits of the content checksum; give it (or a native version id) to `ferry objects restore --version`.',
  args: [2, 2],
  async run(ctx, { positionals }) {
    const asset = objectAsset(ctx, positionals[0]);
    const key = positionals[1];
    const repo = await ctx.repo();
    const list = await objectVersions(repo, asset.name, key);
    if (!list.length) throw new ConfigError(`no snapshot of ${asset.name} has ever held ${JSON.stringify(key)}`, { hint: 'keys of s3 assets are full object keys; of directory assets, paths relative to the directory' });
    ctx.out(
      list.map((v) => ({ ...v, node: undefined })),
      () =>
        table(
          ['VERSION', 'SEEN', 'LAST SEEN', 'SIZE', 'MODIFIED', 'NATIVE VERSION', 'SNAPSHOT'],
          list.map((v) => (v.deleted ? ['deleted', v.time, v.lastSeen, '', '', '', v.snapshot.slice(0, 12)] : [v.version!, v.time, v.lastSeen, bytes(v.size!), v.mtime!, v.nativeVersionId ?? '-', v.snapshot.slice(0, 12)])),
        ),
    );
  },
};

const restore: Command = {
  name: 'objects restore',
  summary: 'restore a deleted object or an older version, or a whole prefix as it was at a time',
  usage: 'NAME KEY [--version V | --at T] (--to PATH | --in-place) [--force]  |  NAME --prefix P [--at T] --to DIR [--force]',
  description: [
    'Without --version or --at, the newest stored version (e.g. of a deleted object). --at T (ISO 8601) takes the version current at T.',
    '--to PATH writes a file (inside PATH if it is a directory); --in-place writes back into the bucket or directory.',
    'Neither overwrites different existing content without --force. --prefix restores every object under P as it was at T under DIR at its full key.',
  ].join('\n'),
  options: { version: { type: 'string' }, at: { type: 'string' }, to: { type: 'string' }, 'in-place': { type: 'boolean' }, prefix: { type: 'string' }, force: { type: 'boolean' } },
  args: [1, 2],
  async run(ctx, { positionals, values }) {
    const asset = objectAsset(ctx, positionals[0]);
    const at = str(values.at) !== undefined ? parseTime(str(values.at)!, '--at') : undefined;
    const to = str(values.to);
    if (values.version !== undefined && at !== undefined) throw new UsageError('give --version or --at, not both');
    const prefix = str(values.prefix);
    if (prefix !== undefined) {
      if (positionals.length > 1) throw new UsageError('give a KEY or --prefix P, not both');
      if (values.version !== undefined) throw new UsageError('--prefix restores the state at a time: use --at T, not --version');
      if (!to || values['in-place']) throw new UsageError('--prefix restores into a directory: give --to DIR (not --in-place)');
      return restorePrefixCommand(ctx, asset, prefix, at, resolve(to), !!values.force);
    }
    if (positionals.length < 2) throw new UsageError('give the KEY to restore (or --prefix P --to DIR)', { hint: 'usage: ferry objects restore NAME KEY [--version V | --at T] (--to PATH | --in-place)' });
    if (!!to === !!values['in-place']) throw new UsageError('give exactly one of --to PATH or --in-place');
    const key = positionals[1];
    const repo = await ctx.repo();
    const list = await objectVersions(repo, asset.name, key);
    const v = chooseVersion(list, key, { version: str(values.version), at });
    const data = await readNode(repo, v.node!);
    const base = { key, version: v.version, snapshot: v.snapshot, seen: v.time, size: data.length, checksum: v.checksum, ...(v.nativeVersionId ? { nativeVersionId: v.nativeVersionId } : {}) };
    if (to) {
      let path = resolve(to);
      const st = await stat(path).catch(() => undefined);
      if (st?.isDirectory()) path = join(path, basename(key));
      const existing = await readFile(path).catch(() => undefined);
      if (existing && existing.equals(data)) {
        ctx.out({ ...base, to: path, written: false }, () => `${path} already holds version ${v.version} of ${key}: nothing to do`);
        return 0;
      }
      if (existing && !values.force) {
        throw new FerryError(`${path} exists (${bytes(existing.length)}) with other content; restoring version ${v.version} of ${key} would overwrite it`, { hint: 'choose another --to PATH, or pass --force to overwrite it' });
      }
      await writeLocal(path, data, v.node!.mtimeNs);
      ctx.out({ ...base, to: path, written: true }, () => `restored version ${v.version} of ${key} (${bytes(data.length)}, seen ${v.time}) to ${path}`);
      return 0;
    }
    const source = await openSource(asset, baseDir(ctx));
    try {
      const cur = await source.read(key);
      if (cur && cur.data.equals(data)) {
        ctx.out({ ...base, inPlace: source.location, written: false }, () => `${key} in ${source.location} already is version ${v.version}: nothing to do`);
        return 0;
      }
      if (cur && !values.force) {
        const e = cur.entry;
        throw new FerryError(
          `${key} exists in ${source.location} with other content (${bytes(e.size)}, modified ${new Date(e.mtimeMs).toISOString()}${e.etag ? `, ETag ${e.etag}` : ''}); restoring version ${v.version} would overwrite it`,
          { hint: `snapshot it first (ferry objects snapshot ${asset.name}) and pass --force, or restore elsewhere with --to PATH` },
        );
      }
      // A fresh mtime: the restored object is a change the next snapshot must see.
      await source.write(key, data);
      ctx.out({ ...base, inPlace: source.location, written: true, ...(cur ? { overwrote: { size: cur.entry.size, etag: cur.entry.etag } } : {}) }, () =>
        `restored version ${v.version} of ${key} (${bytes(data.length)}, seen ${v.time}) in place in ${source.location}${cur ? ` over the current ${bytes(cur.entry.size)}` : ''}`,
      );
      return 0;
    } finally {
      await source.close();
    }
  },
};

async function restorePrefixCommand(ctx: Context, asset: S3Asset | DirectoryAsset, prefix: string, at: number | undefined, dir: string, force: boolean): Promise<number> {
  const busy = await isNonEmptyDir(dir);
  if (busy && !force) {
    const shown = busy.slice(0, 5).join(', ') + (busy.length > 5 ? `, … (${busy.length} entries)` : '');
    throw new FerryError(`target directory ${dir} is not empty (it holds ${shown}); restore would write into it`, { hint: 'restore into an empty or new directory, or pass --force to write over what is there' });
  }
  const repo = await ctx.repo();
  const when = at ?? commandClock(ctx).now();
  const snaps = await objectSnapshots(repo, asset.name);
  const snap = snapshotAt(snaps, when);
  if (!snap) {
    throw new ConfigError(`no snapshot of ${asset.name} at or before ${new Date(when).toISOString()}`, { hint: snaps.length ? `the first is from ${(snaps[0].manifest.meta as unknown as ObjectsMeta).listedAt}` : `take one with \`ferry objects snapshot ${asset.name}\`` });
  }
  await mkdir(dir, { recursive: true });
  const started = Date.now();
  const r = await withLock(repo, `objects restore ${asset.name}`, false, () => restorePrefix(repo, snap, prefix, dir, (d, t) => ctx.progress.update(`restored ${d}/${t} objects`)));
  ctx.progress.done();
  if (r.objects === 0) ctx.warn(`no object of ${asset.name} had a key starting with ${JSON.stringify(prefix)} in the snapshot of ${r.snapshotTime}${asset.type === 's3' && asset.prefix ? ` (keys are full object keys, e.g. ${asset.prefix}...)` : ''}`);
  ctx.out({ asset: asset.name, prefix, at: new Date(when).toISOString(), to: dir, ...r, durationMs: Date.now() - started }, () =>
    `restored ${r.objects} objects (${bytes(r.bytes)}) under ${JSON.stringify(prefix)} as of snapshot ${r.snapshot.slice(0, 12)} (listed ${r.snapshotTime}) to ${dir} in ${duration(Date.now() - started)}`,
  );
  return 0;
}

function settingsText(rs: SettingResult[]): string {
  return table(
    ['SETTING', 'STATUS', 'DETAIL'],
    rs.map((r) => [r.setting, r.status, r.detail + (r.standIn ? `; instead: ${r.standIn}` : '')]),
  );
}

const configure: Command = {
  name: 'objects configure',
  summary: 'turn on bucket versioning, a noncurrent-version lifecycle rule and replication, and read them back',
  usage: 'NAME [--json]',
  description: [
    'On an s3 asset: PutBucketVersioning (Enabled), PutBucketLifecycleConfiguration (noncurrent versions expire after noncurrent_days, default 90),',
    'and PutBucketReplication when the asset sets replicate_to (and replication_role). Each is read back and reported native, off or unsupported;',
    'where the store lacks one, Ferry snapshots and `ferry repo copy` stand in. Exit 1 if a setting failed for another reason (e.g. access denied).',
  ].join('\n'),
  args: [1, 1],
  async run(ctx, { positionals }) {
    const asset = objectAsset(ctx, positionals[0]);
    if (asset.type !== 's3') throw new ConfigError(`asset "${asset.name}" is a directory: it has no bucket settings`, { hint: `Ferry snapshots protect it: ferry objects snapshot ${asset.name} --watch` });
    const { configureBucket } = await import('../objects/bucket.ts');
    const rs = await configureBucket(asset);
    ctx.out({ asset: asset.name, bucket: asset.bucket, settings: rs }, () => `bucket ${asset.bucket} (asset ${asset.name}):\n${settingsText(rs)}`);
    return rs.some((r) => r.status === 'failed') ? 1 : 0;
  },
};

const audit: Command = {
  name: 'audit',
  summary: 'what protects each asset of ferry.yaml: native versioning/replication, Ferry snapshots, or nothing (and why)',
  usage: '[--json]',
  description: 'Exit 1 when an asset other than a `none` one has no protection at all.',
  async run(ctx) {
    const assets = assetsOf(ctx.settings);
    if (!assets.length) throw new ConfigError(`no assets in ${ctx.settings.configPath ?? 'ferry.yaml (none found)'}`, { hint: 'list what to protect under assets: (see docs/objects.md)' });
    let snaps: SnapshotRef[] | undefined;
    let repoNote: string | undefined;
    try {
      snaps = await listSnapshots(await ctx.repo());
    } catch (e) {
      repoNote = `Ferry snapshots unknown: ${errorMessage(e)}`;
    }
    const now = commandClock(ctx).now();
    const out: AssetAudit[] = [];
    for (const a of assets) {
      let native: SettingResult[] | undefined;
      if (a.type === 's3') native = await (await import('../objects/bucket.ts')).readBucketSettings(a);
      out.push(auditAsset(a, snaps?.filter((s) => s.manifest.asset === a.name), native, now, repoNote));
    }
    ctx.out(out, () =>
      [
        table(
          ['ASSET', 'TYPE', 'VERDICT', 'PROTECTED BY'],
          out.map((x) => [x.name, x.type, x.verdict, x.verdict === 'declared-unprotected' ? `nothing: ${x.reason}` : x.protectedBy.join('; ') || 'nothing']),
        ),
        ...out.flatMap((x) => x.notes.map((n) => `  ${x.name}: ${n}`)),
        ...out.filter((x) => x.snapshots?.ageSeconds !== undefined).map((x) => `  ${x.name}: newest snapshot ${duration(x.snapshots!.ageSeconds! * 1000)} old`),
      ].join('\n'),
    );
    return out.some((x) => x.verdict === 'unprotected') ? 1 : 0;
  },
};

export const objectsCommands: Command[] = [snapshot, versions, restore, configure, audit];
