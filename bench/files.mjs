#!/usr/bin/env node
// Side-by-side benchmark of `ferry files snapshot/restore` against restic on one generated tree.
// Usage: node bench/files.mjs [--size-gb N] [--files N] [--keep] ... (see USAGE). bench/README.md explains the output.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  GiB, MiB, TEXT_KINDS, cleanupOnExit, compareTrees, duBytes, ensureGnuTime, ensureRestic, ferryCommand, fmtMiB, fmtRatio, fmtS,
  gitInfo, hashTree, log, machineInfo, makeWorkDir, measure, open, parseArgs, prng, randomBytesFast, removeDir, table, textBytes, warmCache,
  warnIfBusy, writeResults,
} from './lib.mjs';

const USAGE = `Usage: node bench/files.mjs [options]

Generates a tree (small, medium and large files; text-like and random content), then runs for Ferry
and restic, one right after the other: first snapshot, unchanged second snapshot, snapshot after ~5%
of the files changed, full restore into an empty directory. Prints wall time, peak RSS and repository
sizes, verifies both restores against the source, writes bench/results/files-<time>.json.

Options:
  --size-gb N      approximate tree size in GiB (default 2)
  --files N        number of small files, 1-64 KiB each (default 10000)
  --seed N         seed for the tree layout and text (default 1)
  --restic-first   run restic before Ferry in every step (default: Ferry first)
  --check          also time \`ferry repo check --read-data\` against \`restic check --read-data\`
  --use-dist       run the existing dist/ build (bin/ferry) instead of bundling src/ privately
  --keep           keep the work directory under /tmp (tree, repositories, restores)
  -h, --help       this help
`;

const o = parseArgs({ sizeGb: 2, files: 10000, seed: 1, resticFirst: false, check: false, useDist: false, keep: false }, USAGE);
o.files = Math.round(o.files);

const PASSWORD = 'bench-passphrase-correct-horse';

// ------------------------------------------------------------------ setup
const resticVersion = ensureRestic();
const timeBin = ensureGnuTime();
const ferry = await ferryCommand({ useDist: o.useDist });
const work = await makeWorkDir('ferry-bench-files-');
cleanupOnExit([work, ferry.outdir], o.keep);
log(`work dir ${work}; ${resticVersion}; ferry: ${ferry.cmd.join(' ')}`);
const startLoad = warnIfBusy();

const TREE = join(work, 'tree');
const FERRY_REPO = join(work, 'ferry-repo');
const RESTIC_REPO = join(work, 'restic-repo');
const RESTIC_CACHE = join(work, 'restic-cache');
const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FERRY_') && !k.startsWith('RESTIC_')));
const ferryEnv = { ...baseEnv, FERRY_REPO, FERRY_PASSWORD: PASSWORD };
const resticEnv = { ...baseEnv, RESTIC_REPOSITORY: RESTIC_REPO, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: RESTIC_CACHE };

// ------------------------------------------------------------------ tree plan and generation
function planTree() {
  const r = prng(o.seed);
  const files = [];
  // small: log-uniform 1-64 KiB, 60% text-like, 40% random; ~100 per directory, two levels deep
  for (let i = 0; i < o.files; i++) {
    const text = r.next() < 0.6;
    const kind = text ? r.pick(TEXT_KINDS) : 'random';
    const ext = { log: 'log', csv: 'csv', json: 'json', code: 'ts', random: r.pick(['jpg', 'bin', 'gz']) }[kind];
    const d = Math.floor(i / 100);
    files.push({ rel: `small/d${String(d % 10).padStart(2, '0')}/s${String(d).padStart(3, '0')}/f${String(i).padStart(5, '0')}.${ext}`, size: r.logInt(1024, 64 * 1024), kind, cls: 'small' });
  }
  const smallBytes = files.reduce((a, f) => a + f.size, 0);
  // medium: 1-20 MiB, ~50 per 2 GiB; 40% text, 40% random, 20% mixed
  const nMedium = Math.max(4, Math.round(50 * Math.min(1, o.sizeGb / 2)));
  for (let i = 0; i < nMedium; i++) {
    const x = r.next();
    const kind = x < 0.4 ? r.pick(['log', 'csv', 'json']) : x < 0.8 ? 'random' : 'mixed';
    const ext = { log: 'log', csv: 'csv', json: 'jsonl', random: 'dat', mixed: 'db' }[kind];
    files.push({ rel: `medium/m${String(i).padStart(3, '0')}.${ext}`, size: r.int(1 * MiB, 20 * MiB), kind, cls: 'medium' });
  }
  const mediumBytes = files.reduce((a, f) => a + (f.cls === 'medium' ? f.size : 0), 0);
  // large: a few files filling the rest; half log text, half random, in alternating 1-8 MiB blocks
  const nLarge = Math.max(2, Math.round(o.sizeGb));
  const rest = o.sizeGb * GiB - smallBytes - mediumBytes;
  const largeSize = Math.max(32 * MiB, Math.floor(rest / nLarge / MiB) * MiB);
  for (let i = 0; i < nLarge; i++) files.push({ rel: `large/big${i}.log`, size: largeSize, kind: 'mixed', cls: 'large' });
  return files;
}

/** Content for `size` bytes of a file of the given kind. Mixed: alternating 1-8 MiB blocks of log text and random. */
async function writeContent(fh, kind, size, r) {
  let left = size;
  let textTurn = r.next() < 0.5;
  while (left > 0) {
    let n;
    let k = kind;
    if (kind === 'mixed') {
      n = Math.min(left, r.int(1 * MiB, 8 * MiB));
      k = textTurn ? 'log' : 'random';
      textTurn = !textTurn;
    } else n = Math.min(left, 4 * MiB);
    for (let done = 0; done < n; ) {
      const m = Math.min(4 * MiB, n - done);
      const b = k === 'random' ? randomBytesFast(m) : textBytes(k, m, r);
      await fh.write(b, 0, m);
      done += m;
    }
    left -= n;
  }
}

async function generate(files) {
  const r = prng(o.seed * 7919 + 1);
  const dirs = new Set(files.map((f) => join(TREE, f.rel, '..')));
  for (const d of dirs) mkdirSync(d, { recursive: true });
  for (const f of files) {
    const fh = await open(join(TREE, f.rel), 'w');
    await writeContent(fh, f.kind, f.size, r);
    await fh.close();
  }
}

/** Changes ~5% of the files: rewrites 1-3 regions in place (same kind of content) and appends to the large files. */
async function modify(files) {
  const r = prng(o.seed * 104729 + 2);
  const large = files.filter((f) => f.cls === 'large');
  const candidates = files.filter((f) => f.cls !== 'large');
  const want = Math.max(1, Math.round(files.length * 0.05) - large.length);
  const chosen = new Set();
  while (chosen.size < Math.min(want, candidates.length)) chosen.add(candidates[r.int(0, candidates.length - 1)]);
  let rewritten = 0;
  for (const f of chosen) {
    const fh = await open(join(TREE, f.rel), 'r+');
    const regions = r.int(1, 3);
    for (let i = 0; i < regions; i++) {
      const len = f.cls === 'small' ? Math.max(64, Math.round(f.size * (0.1 + 0.3 * r.next()))) : Math.min(f.size, r.int(64 * 1024, MiB));
      const pos = r.int(0, f.size - len);
      const k = f.kind === 'mixed' ? 'random' : f.kind;
      const b = k === 'random' ? randomBytesFast(len) : textBytes(k, len, r);
      await fh.write(b, 0, len, pos);
      rewritten += len;
    }
    await fh.close();
  }
  let appended = 0;
  for (const f of large) {
    const n = Math.min(16 * MiB, Math.max(MiB, Math.round((f.size * 0.02) / 4096) * 4096));
    const fh = await open(join(TREE, f.rel), 'a');
    await fh.write(textBytes('log', n / 2, r));
    await fh.write(randomBytesFast(n - n / 2));
    await fh.close();
    f.size += n;
    appended += n;
  }
  return { filesRewritten: chosen.size, filesAppended: large.length, filesChanged: chosen.size + large.length, bytesRewritten: rewritten, bytesAppended: appended, fractionOfFiles: +((chosen.size + large.length) / files.length).toFixed(4) };
}

// ------------------------------------------------------------------ the tools
const tools = {
  ferry: {
    init: () => measure([...ferry.cmd, 'init', '--json'], { env: ferryEnv, cwd: work, timeBin, label: 'ferry init' }),
    snapshot: async () => {
      const m = await measure([...ferry.cmd, 'files', 'snapshot', TREE, '--json'], { env: ferryEnv, cwd: work, timeBin, label: 'ferry files snapshot' });
      const j = JSON.parse(m.stdout);
      return { ...m, info: { id: j.id, ...j.stats } };
    },
    restore: async (target) => {
      const m = await measure([...ferry.cmd, 'files', 'restore', 'latest', target, '--json'], { env: ferryEnv, cwd: work, timeBin, label: 'ferry files restore' });
      return { ...m, info: JSON.parse(m.stdout), restoredRoot: target };
    },
    check: () => measure([...ferry.cmd, 'repo', 'check', '--read-data'], { env: ferryEnv, cwd: work, timeBin, label: 'ferry repo check --read-data' }),
  },
  restic: {
    init: () => measure(['restic', 'init'], { env: resticEnv, cwd: work, timeBin, label: 'restic init' }),
    snapshot: async () => {
      const m = await measure(['restic', 'backup', '--json', TREE], { env: resticEnv, cwd: work, timeBin, label: 'restic backup' });
      const summary = m.stdout.split('\n').filter((l) => l.includes('"summary"')).map((l) => JSON.parse(l)).pop() ?? {};
      const { message_type: _t, ...info } = summary;
      return { ...m, info };
    },
    restore: async (target) => {
      const m = await measure(['restic', 'restore', 'latest', '--target', target], { env: resticEnv, cwd: work, timeBin, label: 'restic restore' });
      return { ...m, info: { output: m.stdout.trim().split('\n').slice(-2).join(' ') }, restoredRoot: join(target, TREE) };
    },
    check: () => measure(['restic', 'check', '--read-data'], { env: resticEnv, cwd: work, timeBin, label: 'restic check --read-data' }),
  },
};
const order = o.resticFirst ? ['restic', 'ferry'] : ['ferry', 'restic'];
const slim = (m) => ({ wallS: +m.wallS.toFixed(3), peakRssMiB: m.rssKB == null ? null : +(m.rssKB / 1024).toFixed(1), userS: m.userS, sysS: m.sysS, ...(m.info ? { info: m.info } : {}) });

const steps = [];
async function step(name, fn) {
  const row = { step: name };
  for (const t of order) {
    log(`${name}: ${t} ...`);
    const m = await fn(t);
    log(`${name}: ${t} ${fmtS(m.wallS)} s, peak RSS ${m.rssKB == null ? '?' : (m.rssKB / 1024).toFixed(0)} MiB`);
    row[t] = m;
  }
  steps.push(row);
  return row;
}

// ------------------------------------------------------------------ run
const files = planTree();
log(`generating ${files.length} files, ${(files.reduce((a, f) => a + f.size, 0) / GiB).toFixed(2)} GiB under ${TREE} ...`);
let t0 = Date.now();
await generate(files);
const genS = (Date.now() - t0) / 1000;
const treeBytes = duBytes(TREE);
const composition = Object.fromEntries(['small', 'medium', 'large'].map((c) => {
  const fs = files.filter((f) => f.cls === c);
  return [c, { files: fs.length, bytes: fs.reduce((a, f) => a + f.size, 0) }];
}));
log(`generated in ${genS.toFixed(1)} s: ${JSON.stringify(composition)}`);

await tools.ferry.init();
await tools.restic.init();

log('warm-up: cat of the tree');
warmCache(TREE);
await step('1 first snapshot', (t) => tools[t].snapshot());
const repoAfter1 = { ferry: duBytes(FERRY_REPO), restic: duBytes(RESTIC_REPO) };

await step('2 unchanged snapshot', (t) => tools[t].snapshot());

log('changing ~5% of the files');
const change = await modify(files);
log(`changed ${change.filesChanged} files (${change.filesRewritten} rewritten in place, ${change.filesAppended} appended): ${fmtMiB(change.bytesRewritten)} MiB rewritten, ${fmtMiB(change.bytesAppended)} MiB appended`);
warmCache(TREE);
await step('3 snapshot after 5% changed', (t) => tools[t].snapshot());
const repoAfter3 = { ferry: duBytes(FERRY_REPO), restic: duBytes(RESTIC_REPO) };

log('hashing the source tree');
const expected = await hashTree(TREE);
log('warm-up: cat of both repositories');
warmCache(FERRY_REPO, RESTIC_REPO);
const restored = await step('4 full restore', (t) => tools[t].restore(join(work, `restore-${t}`)));

const verify = {};
for (const t of ['ferry', 'restic']) {
  const v = compareTrees(expected, await hashTree(restored[t].restoredRoot));
  verify[t] = v;
  if (v.ok) log(`verify ${t}: OK, ${v.files} files identical to the source`);
  else log(`verify ${t}: FAIL: ${v.missing} missing, ${v.extra} extra, ${v.differ} differ; ${v.examples.join('; ')}`);
}
for (const t of ['ferry', 'restic']) await removeDir(join(work, `restore-${t}`));

if (o.check) await step('5 check --read-data', (t) => tools[t].check());

// ------------------------------------------------------------------ report
const rssMiB = (m) => (m.rssKB == null ? '-' : (m.rssKB / 1024).toFixed(0));
const rows = [['step', 'ferry s', 'restic s', 'ratio', 'ferry RSS MiB', 'restic RSS MiB', 'RSS ratio', 'ferry cpu s', 'restic cpu s']];
const cpu = (m) => (m.userS == null ? '-' : fmtS(m.userS + m.sysS));
for (const s of steps) {
  rows.push([s.step, fmtS(s.ferry.wallS), fmtS(s.restic.wallS), fmtRatio(s.ferry.wallS, s.restic.wallS), rssMiB(s.ferry), rssMiB(s.restic), fmtRatio(s.ferry.rssKB, s.restic.rssKB), cpu(s.ferry), cpu(s.restic)]);
}
const sizeRows = [
  ['repository size (du -sb)', 'ferry MiB', 'restic MiB', 'ratio', 'ferry % of tree', 'restic % of tree'],
  ['after step 1', fmtMiB(repoAfter1.ferry), fmtMiB(repoAfter1.restic), fmtRatio(repoAfter1.ferry, repoAfter1.restic), (100 * repoAfter1.ferry / treeBytes).toFixed(1), (100 * repoAfter1.restic / treeBytes).toFixed(1)],
  ['after step 3', fmtMiB(repoAfter3.ferry), fmtMiB(repoAfter3.restic), fmtRatio(repoAfter3.ferry, repoAfter3.restic), (100 * repoAfter3.ferry / treeBytes).toFixed(1), (100 * repoAfter3.restic / treeBytes).toFixed(1)],
  ['growth 1 -> 3', fmtMiB(repoAfter3.ferry - repoAfter1.ferry), fmtMiB(repoAfter3.restic - repoAfter1.restic), fmtRatio(repoAfter3.ferry - repoAfter1.ferry, repoAfter3.restic - repoAfter1.restic), '', ''],
];
const mibps = (s) => ((treeBytes / MiB) / s).toFixed(0);
let out = `\nFerry vs restic, files: tree ${files.length} files, ${fmtMiB(treeBytes)} MiB (small ${composition.small.files} / medium ${composition.medium.files} / large ${composition.large.files}); ` +
  `${machineInfo().cpus} cores; ${resticVersion.split(' compiled')[0]}; order ${order.join(' then ')}\n`;
out += `step 3 changed ${change.filesChanged} files (${(change.fractionOfFiles * 100).toFixed(1)}%): ${fmtMiB(change.bytesRewritten)} MiB rewritten in place, ${fmtMiB(change.bytesAppended)} MiB appended to ${change.filesAppended} large files\n\n`;
out += table(rows) + '(ratio = ferry / restic; < 1 means Ferry is faster / smaller)\n\n';
out += table(sizeRows) + '\n';
out += `throughput, first snapshot: ferry ${mibps(steps[0].ferry.wallS)} MiB/s, restic ${mibps(steps[0].restic.wallS)} MiB/s; restore: ferry ${mibps(restored.ferry.wallS)} MiB/s, restic ${mibps(restored.restic.wallS)} MiB/s\n`;
for (const s of steps.slice(0, 3)) {
  const f = s.ferry.info;
  const r = s.restic.info;
  out += `${s.step}: ferry read ${f.filesRead}/${f.files} files, new ${fmtMiB(f.newBytes)} MiB -> stored ${fmtMiB(f.storedBytes)} MiB; ` +
    `restic new ${r.files_new} changed ${r.files_changed} unmodified ${r.files_unmodified}, added ${fmtMiB(r.data_added)} MiB\n`;
}
out += `restore verification: ferry ${verify.ferry.ok ? 'OK' : 'FAIL'} (${verify.ferry.files} files), restic ${verify.restic.ok ? 'OK' : 'FAIL'} (${verify.restic.files} files)\n`;
for (const t of ['ferry', 'restic']) if (!verify[t].ok) out += `FAIL: ${t} restore differs from the source: ${verify[t].missing} missing, ${verify[t].extra} extra, ${verify[t].differ} differ (${verify[t].examples.join('; ')})\n`;
const endLoad = warnIfBusy();

const file = writeResults('files', {
  benchmark: 'files',
  date: new Date().toISOString(),
  machine: { ...machineInfo(), loadavgAtStart: startLoad, loadavgAtEnd: endLoad },
  ferry: { ...gitInfo(), command: o.useDist ? 'bin/ferry (dist/)' : 'private bundle of src/' },
  restic: resticVersion,
  rssSource: timeBin ? 'GNU time %M' : '/proc VmHWM polling',
  options: o,
  tree: { files: files.length, bytes: treeBytes, composition, generateS: genS },
  change,
  steps: steps.map((s) => ({ step: s.step, ferry: slim(s.ferry), restic: slim(s.restic), ratio: +(s.ferry.wallS / s.restic.wallS).toFixed(3) })),
  repoBytes: { afterStep1: repoAfter1, afterStep3: repoAfter3 },
  verify,
});
out += `results: ${file}\n`;
process.stdout.write(out);
process.exitCode = verify.ferry.ok && verify.restic.ok ? 0 : 1;
