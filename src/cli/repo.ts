/** Commands for the repository itself: init, check, keys, locks, snapshots, forget, prune. */
import { writeFileSync, existsSync } from 'node:fs';
import { Repository } from '../repo/repository.ts';
import { checkRepository } from '../repo/check.ts';
import { withLock, removeLocks, listLocks } from '../repo/lock.ts';
import { listSnapshots, resolveSnapshot } from '../repo/manifest.ts';
import { forget, prune } from '../repo/prune.ts';
import { credentialsFrom, readSecretFile } from '../config/load.ts';
import { newKeyFileText, readKeyFile, type Credential } from '../codec/keys.ts';
import { DEFAULT_ID_HASH, ID_HASHES, isIdHash } from '../codec/hash.ts';
import { ConfigError, IntegrityError } from '../util/errors.ts';
import { bytes, duration, table } from '../util/format.ts';
import { compressionLevel, str, type Command } from './command.ts';
import type { Context } from './context.ts';

/** The credential for a new key slot: --key-file (created if missing) or FERRY_NEW_PASSWORD(_FILE). */
function newCredential(ctx: Context, keyFile: string | undefined, fallbackToCurrent: boolean): Credential {
  if (keyFile) {
    if (!existsSync(keyFile)) writeFileSync(keyFile, newKeyFileText(), { mode: 0o600, flag: 'wx' });
    return readKeyFile(keyFile);
  }
  const env = ctx.env;
  if (env.FERRY_NEW_PASSWORD) return { kind: 'passphrase', passphrase: env.FERRY_NEW_PASSWORD };
  if (env.FERRY_NEW_PASSWORD_FILE) return { kind: 'passphrase', passphrase: readSecretFile(env.FERRY_NEW_PASSWORD_FILE, 'password file') };
  if (fallbackToCurrent) {
    const creds = credentialsFrom(ctx.settings, env);
    if (creds.length) return creds[0];
  }
  throw new ConfigError('no key given for the new key slot', {
    hint: 'pass --key-file PATH (created if missing), or set FERRY_NEW_PASSWORD / FERRY_NEW_PASSWORD_FILE',
  });
}

const init: Command = {
  name: 'init',
  summary: 'create a new repository',
  usage: '[--key-file PATH] [--compression-level N] [--id-hash blake3|hmac-sha256]',
  description:
    'The first key slot uses --key-file (created with fresh key material if it does not exist),\nor else FERRY_KEY_FILE, FERRY_PASSWORD or FERRY_PASSWORD_FILE.\n' +
    `Blobs are named by a keyed hash of their content: --id-hash (default ${DEFAULT_ID_HASH}; fixed for the\nrepository's life; docs/format.md).`,
  options: { 'key-file': { type: 'string' }, 'compression-level': { type: 'string' }, 'id-hash': { type: 'string' } },
  async run(ctx, { values }) {
    const idHash = str(values['id-hash']) ?? DEFAULT_ID_HASH;
    if (!isIdHash(idHash)) throw new ConfigError(`--id-hash: unknown id hash ${idHash}`, { hint: `use one of ${ID_HASHES.join(', ')}` });
    const cred = newCredential(ctx, str(values['key-file']), true);
    const level = compressionLevel(str(values['compression-level']) ?? ctx.settings.compressionLevel, '--compression-level');
    const repo = await Repository.init(ctx.storage(), cred, { clock: ctx.clock, idHash, ...(level !== undefined ? { compressionLevel: Number(level) } : {}) });
    ctx.out({ id: repo.id, location: repo.location, keyKind: cred.kind, idHash: repo.idHash }, () => `created repository ${repo.id.slice(0, 12)} at ${repo.location} (key: ${cred.kind}; blob ids: ${repo.idHash})`);
  },
};

const keyAdd: Command = {
  name: 'key add',
  summary: 'add a key slot (a new passphrase or key file) without rewriting data',
  usage: '[--key-file PATH]',
  description: 'The new passphrase comes from FERRY_NEW_PASSWORD or FERRY_NEW_PASSWORD_FILE; the current key opens the repository.',
  options: { 'key-file': { type: 'string' } },
  async run(ctx, { values }) {
    const repo = await ctx.repo();
    const slot = await repo.addKey(newCredential(ctx, str(values['key-file']), false));
    ctx.out({ id: slot.id, kind: slot.kind }, () => `added ${slot.kind} key slot ${slot.id.slice(0, 12)}`);
  },
};

const keyList: Command = {
  name: 'key list',
  summary: 'list key slots',
  usage: '[--json]',
  async run(ctx) {
    await ctx.repo();
    const slots = await Repository.readSlots(ctx.storage());
    const rows = slots.map((s) => ({ id: s.id, kind: s.kind, created: s.created, host: s.host, user: s.user }));
    ctx.out(rows, () => table(['ID', 'KIND', 'CREATED', 'USER@HOST'], rows.map((r) => [r.id.slice(0, 12), r.kind, r.created, `${r.user}@${r.host}`])));
  },
};

const keyRemove: Command = {
  name: 'key remove',
  summary: 'remove a key slot (not the last one)',
  usage: 'SLOT_ID',
  args: [1, 1],
  async run(ctx, { positionals }) {
    const repo = await ctx.repo();
    await repo.removeKey(positionals[0]);
    ctx.out({ removed: positionals[0] }, () => `removed key slot ${positionals[0]}`);
  },
};

const check: Command = {
  name: 'repo check',
  aliases: ['check'],
  summary: 'check the repository structure; --read-data also reads and authenticates every byte',
  usage: '[--read-data] [--json]',
  options: { 'read-data': { type: 'boolean' } },
  async run(ctx, { values }) {
    const repo = await ctx.repo();
    const started = Date.now();
    const report = await withLock(repo, 'check', false, () =>
      checkRepository(repo, { readData: !!values['read-data'], onProgress: (d, t) => ctx.progress.update(`reading packs ${d}/${t}`) }),
    );
    ctx.progress.done();
    ctx.out(report, () => {
      const lines = [`checked ${report.snapshots} snapshots, ${report.packs} packs, ${report.blobs} blobs${values['read-data'] ? `, read ${bytes(report.bytesRead)}` : ''} in ${duration(Date.now() - started)}`];
      if (report.unindexedPacks.length) lines.push(`note: ${report.unindexedPacks.length} packs are in no index (left by an interrupted run); \`ferry prune\` removes them`);
      for (const p of report.problems) lines.push(`problem: ${p.message}`);
      lines.push(report.ok ? 'no problems found' : `${report.problems.length} problem(s) found`);
      return lines.join('\n');
    });
    if (!report.ok) {
      if (ctx.json) return 1;
      throw new IntegrityError(`repository ${repo.location} has ${report.problems.length} problem(s): ${report.problems[0].message}`, {
        hint: 'restore affected data from another copy (`ferry repo copy`), or forget the affected snapshots and prune',
      });
    }
  },
};

const snapshots: Command = {
  name: 'snapshots',
  summary: 'list snapshots of every kind',
  usage: '[--kind K] [--asset A] [--json]',
  options: { kind: { type: 'string' }, asset: { type: 'string' } },
  async run(ctx, { values }) {
    const repo = await ctx.repo();
    const list = await listSnapshots(repo, { kind: str(values.kind), asset: str(values.asset) });
    const rows = list.map((s) => ({ id: s.id, shortId: s.id.slice(0, 12), ...s.manifest, tree: undefined }));
    ctx.out(rows, () =>
      list.length === 0
        ? 'no snapshots'
        : table(
            ['ID', 'TIME', 'KIND', 'ASSET', 'FILES', 'SIZE', 'ADDED', 'LABELS'],
            list.map((s) => [
              s.id.slice(0, 12),
              s.manifest.endTime.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
              s.manifest.kind,
              s.manifest.asset,
              String(s.manifest.stats.files),
              bytes(s.manifest.stats.bytes),
              bytes(s.manifest.stats.storedBytes),
              s.manifest.labels.join(','),
            ]),
          ),
    );
  },
};

const forgetCmd: Command = {
  name: 'forget',
  summary: 'delete snapshots (their data stays until `ferry prune`)',
  usage: 'ID...',
  args: [1, 1000],
  async run(ctx, { positionals }) {
    const repo = await ctx.repo();
    const refs: Awaited<ReturnType<typeof resolveSnapshot>>[] = [];
    for (const p of positionals) refs.push(await resolveSnapshot(repo, p));
    await forget(repo, refs.map((r) => r.id));
    ctx.out({ forgotten: refs.map((r) => r.id) }, () => refs.map((r) => `forgot snapshot ${r.id.slice(0, 12)} (${r.manifest.kind} ${r.manifest.asset} ${r.manifest.endTime})`).join('\n'));
  },
};

const pruneCmd: Command = {
  name: 'prune',
  summary: 'remove data no snapshot uses (takes the exclusive lock); --dry-run shows what it would do',
  usage: '[--dry-run] [--json]',
  options: { 'dry-run': { type: 'boolean' } },
  async run(ctx, { values }) {
    const repo = await ctx.repo();
    const dry = !!values['dry-run'];
    const plan = await prune(repo, { dryRun: dry });
    ctx.out({ dryRun: dry, ...plan }, () =>
      [
        `${dry ? 'would delete' : 'deleted'} ${plan.packsDelete.length} unused packs, ${plan.packsUnindexed.length} unindexed packs; ${dry ? 'would repack' : 'repacked'} ${plan.packsRepack.length} packs`,
        `${dry ? 'would free' : 'freed'} ${bytes(plan.bytesFreed)} (${plan.blobsUnused} unused blobs, ${plan.blobsUsed} in use)`,
      ].join('\n'),
    );
  },
};

const unlock: Command = {
  name: 'unlock',
  summary: 'remove stale locks (all locks with --remove-all)',
  usage: '[--remove-all] [--json]',
  options: { 'remove-all': { type: 'boolean' } },
  async run(ctx, { values }) {
    const repo = await ctx.repo();
    const removed = await removeLocks(repo, !!values['remove-all']);
    const left = await listLocks(repo);
    ctx.out({ removed, remaining: left }, () => `removed ${removed.length} lock(s); ${left.length} remain`);
  },
};

export const repoCommands: Command[] = [init, keyAdd, keyList, keyRemove, check, snapshots, forgetCmd, pruneCmd, unlock];
