/**
 * Snapshot retention: which snapshots a policy keeps and which it removes, and why.
 *
 * `applyPolicy` is a pure function of (snapshots, policy, now), in the spirit of
 * restic's `forget` policy, so it is tested with tables and golden files and the
 * CLI only lists, confirms and deletes what it returns.
 *
 * Semantics (all calendar buckets in UTC):
 * - Snapshots are grouped by (kind, asset); each group is decided on its own,
 *   newest first.
 * - keep-last N keeps the N newest; keep-hourly/daily/weekly/monthly/yearly N keep
 *   the newest snapshot of each of the N newest hours/days/ISO weeks/months/years
 *   that have snapshots. While a bucket rule still has counts left when it reaches
 *   the group's oldest snapshot, that oldest one is kept too (restic does the same:
 *   the history kept is as long as the policy allows). A count of -1 means "all".
 * - keep-within D keeps every snapshot taken at or after `now - D` (restic counts
 *   from the newest snapshot instead; here the newest-snapshot rule below covers
 *   a stalled schedule, and "kept 30 days" means 30 days before now, as the
 *   runbook says).
 * - A snapshot carrying a label listed in keepLabels is always kept.
 * - The newest snapshot of a group is never removed, whatever the policy says:
 *   a stalled backup schedule must not let retention empty a group.
 * - A group whose effective policy has no keep rule at all (labels alone do not
 *   count) keeps everything: an empty policy never deletes.
 * - A snapshot whose time cannot be read is kept (never guess towards deletion).
 *
 * Per-kind overrides (`kinds`) replace the top-level rules field by field for
 * snapshots of that kind (e.g. secrets kept 90 days, PostgreSQL 30).
 */
import { ConfigError } from '../util/errors.ts';

export interface RetentionRules {
  /** Keep the N newest snapshots (-1: all). */
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  /** Keep every snapshot taken at or after `now - keepWithin` (milliseconds). */
  keepWithin?: number;
  /** Snapshots carrying any of these labels are always kept. */
  keepLabels?: string[];
}

export interface RetentionPolicy extends RetentionRules {
  /** Overrides per snapshot kind, field by field. */
  kinds?: Record<string, RetentionRules>;
}

export interface RetentionSnapshot {
  id: string;
  kind: string;
  asset: string;
  /** When the snapshot was taken (ISO 8601; the manifest's endTime). */
  time: string;
  labels?: string[];
}

export interface KeepDecision {
  id: string;
  kind: string;
  asset: string;
  time: string;
  reasons: string[];
}

export interface RemoveDecision {
  id: string;
  kind: string;
  asset: string;
  time: string;
  reason: string;
}

export interface RetentionResult {
  /** Grouped by (kind, asset) in name order; newest first within a group. */
  keep: KeepDecision[];
  remove: RemoveDecision[];
}

const BUCKET_RULES = [
  { field: 'keepLast', flag: 'keep-last', reason: 'last' },
  { field: 'keepHourly', flag: 'keep-hourly', reason: 'hourly' },
  { field: 'keepDaily', flag: 'keep-daily', reason: 'daily' },
  { field: 'keepWeekly', flag: 'keep-weekly', reason: 'weekly' },
  { field: 'keepMonthly', flag: 'keep-monthly', reason: 'monthly' },
  { field: 'keepYearly', flag: 'keep-yearly', reason: 'yearly' },
] as const;

type BucketField = (typeof BUCKET_RULES)[number]['field'];

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

function bucketOf(field: BucketField, t: number, index: number): string {
  const d = new Date(t);
  const iso = d.toISOString();
  switch (field) {
    case 'keepLast':
      return String(index);
    case 'keepHourly':
      return iso.slice(0, 13);
    case 'keepDaily':
      return iso.slice(0, 10);
    case 'keepWeekly':
      return isoWeek(t);
    case 'keepMonthly':
      return iso.slice(0, 7);
    case 'keepYearly':
      return iso.slice(0, 4);
  }
}

/** ISO 8601 week of a UTC time, as `YYYY-Www` (weeks start on Monday; week 1 holds the year's first Thursday). */
export function isoWeek(t: number): string {
  const dayStart = Math.floor(t / DAY) * DAY;
  const weekday = (new Date(dayStart).getUTCDay() + 6) % 7; // Monday = 0
  const monday = dayStart - weekday * DAY;
  const year = new Date(monday + 3 * DAY).getUTCFullYear(); // the week's Thursday decides its year
  const jan4 = Date.UTC(year, 0, 4);
  const week1Monday = jan4 - ((new Date(jan4).getUTCDay() + 6) % 7) * DAY;
  const week = 1 + Math.round((monday - week1Monday) / (7 * DAY));
  return `${year}-W${String(week).padStart(2, '0')}`;
}

function effectiveRules(policy: RetentionPolicy, kind: string): RetentionRules {
  const { kinds, ...base } = policy;
  const over = kinds?.[kind];
  if (!over) return base;
  const defined = Object.fromEntries(Object.entries(over).filter(([, v]) => v !== undefined)) as RetentionRules;
  return { ...base, ...defined };
}

/** Whether the rules can keep anything on their own (labels only protect). */
export function hasKeepRule(r: RetentionRules): boolean {
  return r.keepWithin !== undefined || BUCKET_RULES.some((b) => (r[b.field] ?? 0) !== 0);
}

/** The rules in flag form, for messages: `keep-within 30d, keep-daily 7`. */
export function describeRules(r: RetentionRules): string {
  const parts: string[] = [];
  if (r.keepWithin !== undefined) parts.push(`keep-within ${formatDuration(r.keepWithin)}`);
  for (const b of BUCKET_RULES) {
    const n = r[b.field];
    if (n !== undefined && n !== 0) parts.push(`${b.flag} ${n === -1 ? 'all' : n}`);
  }
  if (r.keepLabels?.length) parts.push(`keep-label ${r.keepLabels.join(',')}`);
  return parts.length ? parts.join(', ') : 'no rules';
}

/** Decides which snapshots `policy` keeps at time `now` (ms). Pure: no I/O, no clock. */
export function applyPolicy(snapshots: readonly RetentionSnapshot[], policy: RetentionPolicy, now: number): RetentionResult {
  const groups = new Map<string, RetentionSnapshot[]>();
  for (const s of snapshots) {
    const key = JSON.stringify([s.kind, s.asset]);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(s);
  }
  const keep: KeepDecision[] = [];
  const remove: RemoveDecision[] = [];
  for (const key of [...groups.keys()].sort()) {
    const list = groups.get(key)!;
    const rules = effectiveRules(policy, list[0].kind);
    const r = decideGroup(list, rules, now);
    keep.push(...r.keep);
    remove.push(...r.remove);
  }
  return { keep, remove };
}

function decideGroup(list: RetentionSnapshot[], rules: RetentionRules, now: number): RetentionResult {
  const timed = list.map((s) => ({ s, t: Date.parse(s.time) }));
  // Newest first; equal times in id order so the result never depends on input order.
  timed.sort((a, b) => (Number.isNaN(b.t) ? -Infinity : b.t) - (Number.isNaN(a.t) ? -Infinity : a.t) || (a.s.id < b.s.id ? -1 : a.s.id > b.s.id ? 1 : 0));
  const reasons = timed.map(() => [] as string[]);
  const active = hasKeepRule(rules);
  const labels = new Set(rules.keepLabels ?? []);

  const readable = timed.map((x, i) => ({ ...x, i })).filter((x) => !Number.isNaN(x.t));
  timed.forEach((x, i) => {
    if (Number.isNaN(x.t)) reasons[i].push('time unreadable');
  });
  if (!active) {
    timed.forEach((_, i) => reasons[i].push('no keep rule for this kind'));
  } else {
    for (const x of readable) {
      const hit = (x.s.labels ?? []).filter((l) => labels.has(l));
      for (const l of hit) reasons[x.i].push(`label ${l}`);
      if (rules.keepWithin !== undefined && x.t >= now - rules.keepWithin) reasons[x.i].push(`within ${formatDuration(rules.keepWithin)}`);
    }
    for (const b of BUCKET_RULES) {
      let count = rules[b.field] ?? 0;
      if (count === 0) continue;
      let last: string | undefined;
      readable.forEach((x, n) => {
        if (count === 0) return;
        const bucket = bucketOf(b.field, x.t, n);
        if (bucket !== last) {
          last = bucket;
          if (count > 0) count--;
          reasons[x.i].push(b.field === 'keepLast' ? 'last' : `${b.reason} ${bucket}`);
        } else if (n === readable.length - 1) {
          if (count > 0) count--;
          reasons[x.i].push(`oldest, ${b.flag} has counts left`);
        }
      });
    }
  }

  // Whatever the policy says, the newest snapshot of a group stays.
  if (readable.length && reasons[readable[0].i].length === 0) reasons[readable[0].i].push('newest of its group');

  const keep: KeepDecision[] = [];
  const remove: RemoveDecision[] = [];
  const why = `matches no keep rule (${describeRules(rules)})`;
  timed.forEach((x, i) => {
    const base = { id: x.s.id, kind: x.s.kind, asset: x.s.asset, time: x.s.time };
    if (reasons[i].length) keep.push({ ...base, reasons: reasons[i] });
    else remove.push({ ...base, reason: why });
  });
  return { keep, remove };
}

// ---- durations and policy documents ------------------------------------------------

const UNITS: Record<string, number> = { y: 365 * DAY, mo: 30 * DAY, w: 7 * DAY, d: DAY, h: HOUR, min: MINUTE, s: 1000 };

/**
 * Parses a duration such as `30d`, `7d12h`, `2w`, `90min`, `1y` into milliseconds.
 * Units: y (365 days), mo (30 days), w, d, h, min, s. A bare `m` is refused on
 * purpose: restic reads it as months, others as minutes, and guessing wrong here
 * deletes backups.
 */
export function parseDuration(text: string, what = 'duration'): number {
  const t = text.trim();
  if (t === '0') return 0;
  const re = /(\d+)(y|mo|w|d|h|min|s)/gy;
  let total = 0;
  let at = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(t))) {
    total += Number(m[1]) * UNITS[m[2]];
    at = re.lastIndex;
  }
  if (at === 0 || at !== t.length) {
    throw new ConfigError(`${what} "${text}" is not a duration`, { hint: 'write it like 30d, 7d12h, 2w, 90min or 1y (units: y, mo, w, d, h, min, s)' });
  }
  return total;
}

/** Formats milliseconds as the largest whole units: 30d, 1d12h, 90min → 1h30min. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  const parts: string[] = [];
  let rest = ms;
  for (const [u, size] of [['d', DAY], ['h', HOUR], ['min', MINUTE], ['s', 1000]] as const) {
    const n = Math.floor(rest / size);
    if (n) parts.push(`${n}${u}`);
    rest -= n * size;
  }
  if (rest) parts.push(`${rest}ms`);
  return parts.join('');
}

/** Parses a keep count: a non-negative integer, or `all` (-1). */
export function parseCount(v: unknown, what: string): number {
  if (v === 'all' || v === -1) return -1;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  if (typeof v === 'string' && /^\d+$/.test(v.trim())) return Number(v.trim());
  throw new ConfigError(`${what} must be a whole number of snapshots (or "all"), got ${JSON.stringify(v)}`);
}

const DOC_FIELDS: Record<string, keyof RetentionRules> = {
  keep_last: 'keepLast',
  keep_hourly: 'keepHourly',
  keep_daily: 'keepDaily',
  keep_weekly: 'keepWeekly',
  keep_monthly: 'keepMonthly',
  keep_yearly: 'keepYearly',
  keep_within: 'keepWithin',
  keep_labels: 'keepLabels',
};

/**
 * Reads retention rules from a config document such as ferry.yaml's
 * `policy.retention` (snake_case keys: keep_within, keep_last, keep_daily, …,
 * keep_labels, and `kinds: { <kind>: { …same keys… } }`). Unknown keys are an
 * error: a misspelt rule silently ignored would keep or delete the wrong things.
 * `ignore` names keys another module reads from the same section.
 */
export function parseRetentionDoc(doc: unknown, where: string, ignore: readonly string[] = []): RetentionPolicy {
  const top = parseRules(doc, where, [...ignore, 'kinds']);
  const kindsDoc = (doc as Record<string, unknown>).kinds;
  if (kindsDoc === undefined || kindsDoc === null) return top;
  if (typeof kindsDoc !== 'object' || Array.isArray(kindsDoc)) throw new ConfigError(`${where}.kinds must be a map from snapshot kind to rules`);
  const kinds: Record<string, RetentionRules> = {};
  for (const [k, v] of Object.entries(kindsDoc)) kinds[k] = parseRules(v, `${where}.kinds.${k}`, []);
  return { ...top, kinds };
}

function parseRules(doc: unknown, where: string, ignore: readonly string[]): RetentionRules {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`${where} must be a map of retention rules`);
  const out: RetentionRules = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    if (ignore.includes(k)) continue;
    const field = DOC_FIELDS[k];
    if (!field) throw new ConfigError(`${where}: unknown retention rule "${k}"`, { hint: `known rules: ${Object.keys(DOC_FIELDS).join(', ')}${ignore.length ? `, ${ignore.join(', ')}` : ''}` });
    if (v === null || v === undefined) continue;
    if (field === 'keepWithin') out.keepWithin = parseDuration(String(v), `${where}.${k}`);
    else if (field === 'keepLabels') {
      if (!Array.isArray(v) || !v.every((l) => typeof l === 'string')) throw new ConfigError(`${where}.${k} must be a list of labels`);
      out.keepLabels = v as string[];
    } else out[field] = parseCount(v, `${where}.${k}`);
  }
  return out;
}
