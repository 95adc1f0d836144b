/**
 * `ferry secrets snapshot | versions | restore | expire` and `ferry git snapshot |
 * snapshots | restore`: secrets versions and git repositories kept as bundles.
 * Secret values are printed only by `secrets restore --reveal`; nothing else here
 * prints, logs or records them.
 */
import { dirname, resolve } from 'node:path';
import { credentialsFrom } from '../config/load.ts';
import { findAsset } from '../config/assets.ts';
import { listGitSnapshots, restoreGit, snapshotGit } from '../gitrepo/git.ts';
import { withLock } from '../repo/lock.ts';
import { listSnapshots } from '../repo/manifest.ts';
import { forget, prune, type PrunePlan } from '../repo/prune.ts';
import { Repository } from '../repo/repository.ts';
import { recordedRun } from '../repo/runs.ts';
import { planSecretsExpiry } from '../secrets/retention.ts';
import { DEFAULT_COMMAND_TIMEOUT_MS, KIND as SECRETS, listVersions, loadVersion, readSecretSource, snapshotSecrets, writeVersion } from '../secrets/secrets.ts';
import type { Clock } from '../util/clock.ts';
import { UsageError } from '../util/errors.ts';
import { bytes, table } from '../util/format.ts';
import { confirmOnTerminal, seconds, str, type Command } from './command.ts';
import type { Context } from './context.ts';
import { commandClock } from './expire.ts';

/**
 * The repository on the command clock: FERRY_NOW (tests that run bin/ferry) moves "now"
 * to that time, from which it runs on, so versions can be stored "91 days ago".
 */
async function repoOnCommandClock(ctx: Context): Promise<Repository> {
  if (!ctx.env.FERRY_NOW) return ctx.repo();
  const base = commandClock(ctx).now();
  const started = ctx.clock.now();
  const clock: Clock = { now: () => base + (ctx.clock.now() - started), random: (n) => ctx.clock.random(n) };
  return Repository.open(ctx.storage(), credentialsFrom(ctx.settings, ctx.env), clock);
}

/** Relative paths in ferry.yaml are relative to the file. */
function baseDir(ctx: Context): string {
  return ctx.settings.configPath ? dirname(resolve(ctx.settings.configPath)) : process.cwd();
}

function short(t: string): string {
  return t.replace(/\.\d+Z$/, 'Z');
}

// ---- secrets -----------------------------------------------------------------------------

const secretsSnapshot: Command = {
  name: 'secrets snapshot',
  summary: 'store a new encrypted version of a secrets asset if its content changed',
  usage: 'NAME [--timeout SECONDS] [--json]',
  description: [
    'Reads the asset (file, dir or command in ferry.yaml) and stores it as a new version only when its content differs',
    'from the newest version (compared by a keyed fingerprint, never by value). A command runs through /bin/sh with a',
    'timeout (--timeout, default 60 s); a non-zero exit stores nothing, and its output is never shown.',
  ].join('\n'),
  options: { timeout: { type: 'string' } },
  args: [1, 1],
  async run(ctx, { positionals, values }) {
    const asset = findAsset(ctx.settings, positionals[0], 'secrets');
    const timeoutMs = seconds(str(values.timeout), DEFAULT_COMMAND_TIMEOUT_MS / 1000, '--timeout');
    const repo = await repoOnCommandClock(ctx);
    const r = await recordedRun(
      repo,
      { job: 'secrets snapshot', asset: asset.name },
      async () => {
        const content = await readSecretSource(asset, { baseDir: baseDir(ctx), timeoutMs, env: ctx.env });
        return withLock(repo, `secrets snapshot ${asset.name}`, false, () => snapshotSecrets(repo, asset, content));
      },
      (x) => ({ ...(x.stored ? { snapshot: x.version.id, bytes: x.version.size } : {}), details: { stored: x.stored } }),
    );
    const v = r.version;
    ctx.out({ asset: asset.name, stored: r.stored, version: v, ...(r.previous ? { previous: r.previous.id } : {}) }, () =>
      r.stored
        ? `secrets ${asset.name}: new version ${v.id.slice(0, 12)} stored (${v.files} file(s), ${bytes(v.size)}, fingerprint ${v.fingerprint})`
        : `secrets ${asset.name}: unchanged since version ${v.id.slice(0, 12)} of ${short(v.time)} (fingerprint ${v.fingerprint}); nothing stored`,
    );
  },
};

const secretsVersions: Command = {
  name: 'secrets versions',
  summary: 'list the versions of a secrets asset (never their values)',
  usage: 'NAME [--json]',
  args: [1, 1],
  async run(ctx, { positionals }) {
    const asset = findAsset(ctx.settings, positionals[0], 'secrets');
    const repo = await ctx.repo();
    const versions = await listVersions(repo, asset.name);
    ctx.out({ asset: asset.name, keepDays: asset.keep_days, versions }, () =>
      versions.length
        ? table(
            ['VERSION', 'TIME', 'SOURCE', 'FILES', 'SIZE', 'FINGERPRINT'],
            versions.map((v) => [v.id.slice(0, 12), short(v.time), v.source, String(v.files), bytes(v.size), v.fingerprint]),
          )
        : `no versions of secrets ${asset.name} yet (\`ferry secrets snapshot ${asset.name}\` stores one)`,
    );
  },
};

const secretsRestore: Command = {
  name: 'secrets restore',
  summary: 'write a version of a secrets asset to a file or directory (mode 0600), or print it with --reveal',
  usage: 'NAME --version ID|latest [--to PATH [--force]] [--reveal] [--json]',
  description: [
    'With --to, writes the version to PATH (a file for file and command assets, a directory for dir assets), mode 0600;',
    'an existing PATH is refused unless --force. Without --to, the value is printed only with --reveal.',
  ].join('\n'),
  options: { version: { type: 'string' }, to: { type: 'string' }, reveal: { type: 'boolean' }, force: { type: 'boolean' } },
  args: [1, 1],
  async run(ctx, { positionals, values }) {
    const asset = findAsset(ctx.settings, positionals[0], 'secrets');
    const ref = str(values.version);
    if (!ref) throw new UsageError('ferry secrets restore needs --version ID (or --version latest)', { hint: `\`ferry secrets versions ${asset.name}\` lists them` });
    const to = str(values.to);
    if (!to && !values.reveal) {
      throw new UsageError('ferry secrets restore prints a secret only when told to', { hint: 'add --reveal to print it, or --to PATH to write it to a file' });
    }
    const repo = await ctx.repo();
    const { version, content } = await withLock(repo, `secrets restore ${asset.name}`, false, () => loadVersion(repo, asset.name, ref));
    if (to) {
      const target = resolve(to);
      const w = await writeVersion(content, target, !!values.force);
      ctx.out({ asset: asset.name, version: version.id, to: target, ...w }, () => `restored version ${version.id.slice(0, 12)} of secrets ${asset.name} (${short(version.time)}) to ${target}: ${w.files} file(s), ${bytes(w.bytes)}, mode 0600`);
      return;
    }
    // --reveal: the one place a value is printed, on purpose.
    if (ctx.json) {
      ctx.out({ asset: asset.name, version: version.id, files: content.files.map((f) => ({ path: f.path, base64: f.data.toString('base64') })) }, () => '');
    } else if (content.source !== 'dir') {
      process.stdout.write(content.files[0]?.data ?? '');
    } else {
      for (const f of content.files) {
        process.stdout.write(`==> ${f.path} <==\n`);
        process.stdout.write(f.data);
        if (f.data.length && f.data[f.data.length - 1] !== 0x0a) process.stdout.write('\n');
      }
    }
  },
};

const secretsExpire: Command = {
  name: 'secrets expire',
  summary: 'remove versions older than the asset\'s keep_days (default 90), never the newest (shows the plan; acts only with --yes)',
  usage: 'NAME [--dry-run | --yes] [--prune] [--json]',
  description: 'The removed versions\' data stays in packs (encrypted) until `ferry prune`, or --prune here.',
  options: { 'dry-run': { type: 'boolean' }, yes: { type: 'boolean' }, prune: { type: 'boolean' } },
  args: [1, 1],
  async run(ctx, { positionals, values }) {
    const asset = findAsset(ctx.settings, positionals[0], 'secrets');
    const dry = !!values['dry-run'];
    const yes = !!values.yes;
    if (dry && yes) throw new UsageError('ferry secrets expire takes --dry-run or --yes, not both');
    const now = commandClock(ctx).now();
    const repo = await ctx.repo();
    const plan = planSecretsExpiry(await listVersions(repo, asset.name), asset.keep_days, now);
    const human = () =>
      [
        `secrets ${asset.name}: keep ${asset.keep_days} days (versions stored before ${short(plan.cutoff)} go, the newest stays): ${plan.keep.length} kept, ${plan.remove.length} to remove`,
        ...(plan.keep.length + plan.remove.length
          ? [
              table(
                ['VERSION', 'TIME', 'ACTION', 'WHY'],
                [...plan.keep.map((k) => [k.id.slice(0, 12), short(k.time), 'keep', k.reason]), ...plan.remove.map((r) => [r.id.slice(0, 12), short(r.time), 'remove', r.reason])].sort((a, b) => b[1].localeCompare(a[1])),
              )
                .split('\n')
                .map((l) => `  ${l}`)
                .join('\n'),
            ]
          : []),
      ].join('\n');
    const base = { asset: asset.name, now: new Date(now).toISOString(), keepDays: asset.keep_days, ...plan };
    if (plan.remove.length === 0) {
      ctx.out({ ...base, dryRun: dry, done: true, removed: [] }, () => `${human()}\nnothing to remove`);
      return;
    }
    if (dry) {
      ctx.out({ ...base, dryRun: true, done: false }, () => `${human()}\ndry run: would remove ${plan.remove.length} version(s); nothing removed`);
      return;
    }
    if (!yes) {
      if (!process.stdin.isTTY || !process.stderr.isTTY) {
        ctx.out({ ...base, dryRun: false, done: false }, human);
        throw new UsageError(`ferry secrets expire would remove ${plan.remove.length} version(s) of ${asset.name} but was not told to: it removes only with --yes when there is no terminal`, {
          hint: 'pass --yes to remove them, or --dry-run to only list them',
        });
      }
      if (!ctx.json) process.stdout.write(human() + '\n');
      if (!(await confirmOnTerminal(`Remove ${plan.remove.length} version(s) of secrets ${asset.name}?`))) {
        ctx.say('nothing removed');
        return 1;
      }
    }
    const shown = new Set(plan.remove.map((r) => r.id));
    const removed = await recordedRun(
      repo,
      { job: 'secrets expire', asset: asset.name },
      () =>
        withLock(repo, `secrets expire ${asset.name}`, false, async () => {
          // Again under the lock: only what was shown and is still removable (a newer version may have come).
          const fresh = planSecretsExpiry(
            (await listSnapshots(repo, { kind: SECRETS, asset: asset.name })).map((r) => ({ id: r.id, time: r.manifest.endTime })),
            asset.keep_days,
            now,
          );
          const ids = fresh.remove.filter((r) => shown.has(r.id)).map((r) => r.id);
          await forget(repo, ids);
          return ids;
        }),
      (ids) => ({ details: { removed: ids } }),
    );
    let pruned: PrunePlan | undefined;
    if (values.prune) pruned = await prune(repo, {});
    ctx.out({ ...base, dryRun: false, done: true, removed, ...(pruned ? { prune: pruned } : {}) }, () =>
      [
        ...(yes ? [human()] : []),
        `removed ${removed.length} version(s) of secrets ${asset.name}`,
        pruned ? `pruned: deleted ${pruned.packsDelete.length + pruned.packsUnindexed.length} pack(s), repacked ${pruned.packsRepack.length}; freed ${bytes(pruned.bytesFreed)}` : '`ferry prune` frees their data',
      ].join('\n'),
    );
  },
};

// ---- git ---------------------------------------------------------------------------------

const gitSnapshot: Command = {
  name: 'git snapshot',
  summary: 'keep a git repository as a bundle of all refs, when it has new commits or refs',
  usage: 'NAME [--json]',
  args: [1, 1],
  async run(ctx, { positionals }) {
    const asset = findAsset(ctx.settings, positionals[0], 'git');
    const path = resolve(baseDir(ctx), asset.repo);
    const repo = await repoOnCommandClock(ctx);
    const r = await recordedRun(
      repo,
      { job: 'git snapshot', asset: asset.name },
      () => withLock(repo, `git snapshot ${asset.name}`, false, () => snapshotGit(repo, asset, path)),
      (x) => ({ ...(x.stored ? { snapshot: x.snapshot.id, bytes: x.snapshot.size } : {}), details: { stored: x.stored } }),
    );
    const s = r.snapshot;
    ctx.out({ asset: asset.name, repo: path, stored: r.stored, snapshot: s, ...(r.previous ? { previous: r.previous.id } : {}) }, () =>
      r.stored
        ? `git ${asset.name}: snapshot ${s.id.slice(0, 12)} stored (${s.refs} refs, HEAD ${s.head ?? 'detached'} at ${s.headCommit?.slice(0, 12) ?? '-'}, bundle ${bytes(s.size)})`
        : `git ${asset.name}: no new commits or refs since snapshot ${s.id.slice(0, 12)} of ${short(s.time)}; nothing stored`,
    );
  },
};

const gitSnapshots: Command = {
  name: 'git snapshots',
  summary: 'list the bundle snapshots of a git asset',
  usage: 'NAME [--json]',
  args: [1, 1],
  async run(ctx, { positionals }) {
    const asset = findAsset(ctx.settings, positionals[0], 'git');
    const repo = await ctx.repo();
    const list = await listGitSnapshots(repo, asset.name);
    ctx.out({ asset: asset.name, snapshots: list }, () =>
      list.length
        ? table(
            ['SNAPSHOT', 'TIME', 'REFS', 'HEAD', 'COMMIT', 'SIZE'],
            list.map((s) => [s.id.slice(0, 12), short(s.time), String(s.refs), s.head ?? '(detached)', s.headCommit?.slice(0, 12) ?? '-', bytes(s.size)]),
          )
        : `no snapshots of git ${asset.name} yet (\`ferry git snapshot ${asset.name}\` takes one)`,
    );
  },
};

const gitRestore: Command = {
  name: 'git restore',
  summary: 'clone a git snapshot into a new directory with every ref restored',
  usage: 'NAME [--snapshot ID|latest] --to DIR [--bare] [--json]',
  description: 'DIR must be missing or empty. The result is bare when the source was (or with --bare), else has its work tree checked out.',
  options: { snapshot: { type: 'string' }, to: { type: 'string' }, bare: { type: 'boolean' } },
  args: [1, 1],
  async run(ctx, { positionals, values }) {
    const asset = findAsset(ctx.settings, positionals[0], 'git');
    const to = str(values.to);
    if (!to) throw new UsageError('ferry git restore needs --to DIR', { hint: 'give a new or empty directory' });
    const target = resolve(to);
    const repo = await ctx.repo();
    const r = await withLock(repo, `git restore ${asset.name}`, false, () => restoreGit(repo, asset.name, str(values.snapshot) ?? 'latest', target, values.bare ? { bare: true } : {}));
    ctx.out({ asset: asset.name, to: target, ...r }, () => `restored snapshot ${r.snapshot.id.slice(0, 12)} of git ${asset.name} (${short(r.snapshot.time)}) to ${target}: ${r.refs} refs${r.bare ? ', bare' : ''}, all checked`);
  },
};

export const secretsCommands: Command[] = [secretsSnapshot, secretsVersions, secretsRestore, secretsExpire, gitSnapshot, gitSnapshots, gitRestore];
