/** `ferry repo copy --to URL [--watch]` and `ferry status`: cross-region replication and its lag. */
import { openStorage } from '../storage/open.ts';
import type { Storage } from '../storage/types.ts';
import { copyRepository, watchCopy, type CopyReport } from '../replicate/copy.ts';
import type { CopyLag } from '../replicate/plan.ts';
import { metricsText, repoStatus } from '../replicate/status.ts';
import { UsageError } from '../util/errors.ts';
import { bytes, duration } from '../util/format.ts';
import { onStopSignals, seconds, str, type Command } from './command.ts';
import type { Context } from './context.ts';

/**
 * The copy's storage. Its S3 endpoint: the flag, else FERRY_COPY_S3_ENDPOINT, else
 * FERRY_S3_ENDPOINT (the same server as the source). Credentials come from the AWS
 * SDK's usual environment, the same for both sides.
 */
function openCopy(ctx: Context, url: string, endpointFlag: string | undefined): Storage {
  if (url.trim() === '') throw new UsageError('--to needs a URL: a path, file://PATH or s3://BUCKET/PREFIX');
  const endpoint = endpointFlag ?? (ctx.env.FERRY_COPY_S3_ENDPOINT || ctx.env.FERRY_S3_ENDPOINT || undefined);
  return openStorage(url, { endpoint, env: ctx.env, ...(ctx.opts.verbose ? { log: ctx.log } : {}) });
}

function lagLine(lag: CopyLag): string {
  const one = (k: CopyLag['wal']) => (k.missing === 0 ? '0s' : `${k.lagSeconds.toFixed(1)}s (${k.missing} missing)`);
  return `lag: wal ${one(lag.wal)}, snapshots ${one(lag.snapshot)}`;
}

function roundJson(r: CopyReport): unknown {
  return { ...r, vanished: r.vanished.length ? r.vanished : undefined };
}

function roundLine(r: CopyReport): string {
  const what = r.copied === 0 ? 'nothing to copy' : `copied ${r.copied} objects (${bytes(r.bytes)})${r.replaced ? `, ${r.replaced} partial copies redone` : ''}`;
  const tail = r.caughtUp ? 'caught up' : r.interrupted ? 'interrupted' : `not caught up; ${lagLine(r.lagAfter)}`;
  const vanished = r.vanished.length ? `; ${r.vanished.length} objects vanished at the source meanwhile` : '';
  return `${what} to ${r.destination} in ${duration(r.durationMs)}; before: ${lagLine(r.lagBefore)}; ${tail}${vanished}`;
}

const copy: Command = {
  name: 'repo copy',
  summary: 'copy the repository to another location (any backend), only what it lacks; --watch keeps copying',
  usage: '--to URL [--to-endpoint URL] [--watch [--interval S]] [--json]',
  description: [
    'Copies key slots and config (once), then packs and WAL, then index files, then snapshots and runs,',
    'so the copy is a valid repository at every instant. No key is needed and nothing is re-encrypted:',
    'the copy opens with the same keys. Each object is verified after copying (packs by size and id).',
    'Interrupted, it resumes: the next run copies only what is still missing. It never deletes at the copy.',
    'The copy\'s S3 endpoint: --to-endpoint, else FERRY_COPY_S3_ENDPOINT, else FERRY_S3_ENDPOINT.',
    'With --watch it copies every --interval seconds (default 5) and reports the lag, until SIGINT or SIGTERM;',
    'with --json it prints one JSON object per round, one per line.',
  ].join('\n'),
  options: { to: { type: 'string' }, 'to-endpoint': { type: 'string' }, watch: { type: 'boolean' }, interval: { type: 'string' } },
  async run(ctx, { values }) {
    const to = str(values.to);
    if (to === undefined) throw new UsageError('repo copy needs --to URL (where to copy the repository)');
    if (values.interval !== undefined && !values.watch) throw new UsageError('--interval only applies with --watch');
    const intervalMs = seconds(str(values.interval), 5, '--interval');
    const source = ctx.storage();
    const dest = openCopy(ctx, to, str(values['to-endpoint']));
    if (dest.location === source.location) throw new UsageError(`--to ${to} is the repository itself`);
    try {
      const onProgress = (p: { done: number; total: number; bytes: number }) => ctx.progress.update(`copying ${p.done}/${p.total}  ${bytes(p.bytes)}`);
      if (!values.watch) {
        const r = await copyRepository(source, dest, { clock: ctx.clock, onProgress });
        ctx.progress.done();
        ctx.out(roundJson(r), () => roundLine(r));
        return r.caughtUp ? 0 : 1;
      }
      // The first signal ends the watch after the objects in flight; a second one exits at once.
      const stop = onStopSignals();
      try {
        await watchCopy(source, dest, {
          clock: ctx.clock,
          intervalMs,
          signal: stop.signal,
          onProgress,
          onRound: ({ round, report, error }) => {
            ctx.progress.done();
            if (ctx.json) process.stdout.write(JSON.stringify({ round, time: new Date(ctx.clock.now()).toISOString(), ...(report ? (roundJson(report) as object) : { error: error?.message }) }) + '\n');
            else if (error) ctx.warn(`round ${round} failed, trying again in ${duration(intervalMs)}: ${error.message}`);
            else if (report) ctx.say(`round ${round}: ${roundLine(report)}`);
          },
        });
      } finally {
        stop.dispose();
      }
    } finally {
      await dest.close();
    }
  },
};

function age(s: number): string {
  return duration(Math.round(s * 1000));
}

const status: Command = {
  name: 'status',
  summary: 'snapshot counts, newest snapshot and WAL, and the lag of a copy (--copy URL)',
  usage: '[--copy URL] [--copy-endpoint URL] [--json | --metrics]',
  description: [
    'The copy comes from --copy or FERRY_COPY_TO; its S3 endpoint from --copy-endpoint, FERRY_COPY_S3_ENDPOINT or FERRY_S3_ENDPOINT.',
    'The copy lag of a kind (wal, snapshot) is the age of the oldest object of that kind the copy lacks, 0 when caught up.',
    '--metrics prints the figures in the Prometheus text format (ferry_copy_lag_seconds{kind="wal"|"snapshot"} and more).',
  ].join('\n'),
  options: { copy: { type: 'string' }, 'copy-endpoint': { type: 'string' }, metrics: { type: 'boolean' } },
  async run(ctx, { values }) {
    if (values.metrics && ctx.json) throw new UsageError('choose one of --json and --metrics');
    const repo = await ctx.repo();
    const copyUrl = str(values.copy) ?? (ctx.env.FERRY_COPY_TO || undefined);
    const dest = copyUrl !== undefined ? openCopy(ctx, copyUrl, str(values['copy-endpoint'])) : undefined;
    try {
      const s = await repoStatus(repo, ctx.clock.now(), dest);
      if (values.metrics) {
        process.stdout.write(metricsText(s));
        return;
      }
      ctx.out(s, () => {
        const kinds = Object.entries(s.snapshots.byKind)
          .map(([k, n]) => `${n} ${k}`)
          .join(', ');
        const lines = [`repository ${s.repositoryId.slice(0, 12)} at ${s.location}`];
        lines.push(`snapshots: ${s.snapshots.total}${kinds ? ` (${kinds})` : ''}`);
        if (s.snapshots.newest) lines.push(`newest snapshot: ${s.snapshots.newest.id.slice(0, 12)} ${s.snapshots.newest.kind} ${s.snapshots.newest.asset}, ${age(s.snapshots.newest.ageSeconds)} ago`);
        lines.push(s.wal.newest ? `newest WAL: ${s.wal.newest.name}, stored ${age(s.wal.newest.ageSeconds)} ago (${s.wal.objects} WAL objects)` : 'WAL: none archived');
        if (s.copy) {
          lines.push(`copy at ${s.copy.destination}: ${s.copy.initialized ? `${s.copy.snapshots} snapshots, ${s.copy.walObjects} WAL objects` : 'not started'}`);
          lines.push(`copy ${lagLine(s.copy.lag)}`);
        }
        return lines.join('\n');
      });
    } finally {
      await dest?.close();
    }
  },
};

export const copyCommands: Command[] = [copy, status];
