#!/usr/bin/env node
// Object files: `ferry objects` on a directory asset against restic on the same file set, plus the
// issue's acceptance at full size (delete 100, overwrite 100, add 100; every deleted file and older
// version, and the whole set as it was between the snapshots, restore byte-identical).
// Usage: node bench/objects.mjs [--files N] [--min-kb N] [--max-kb N] [--keep] ... (see USAGE).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  cleanupOnExit, compareTrees, duBytes, ensureGnuTime, ensureRestic, ferryCommand, fmtMiB, fmtRatio, fmtS, gitInfo, hashTree, log,
  machineInfo, makeWorkDir, measure, open, parseArgs, prng, randomBytesFast, table, warmCache, warnIfBusy, writeResults,
} from './lib.mjs';

const USAGE = `Usage: node bench/objects.mjs [options]

Generates --files files of --min-kb to --max-kb (log-uniform sizes, random content) in ~100 folders,
then for Ferry (\`ferry objects\`, directory asset) and restic: first snapshot, unchanged snapshot,
snapshot after 1% of the files were overwritten, restore of everything, restore of one file.
Then (Ferry) deletes, overwrites and adds --changes files each, snapshots, and checks that the whole
set restored as of a time between the snapshots is the listing of that time, byte for byte (so every
deleted file and every older version), and that the newest state restores too.

Options:
  --files N       number of files (default 10000)
  --min-kb N      smallest file in KiB (default 10)
  --max-kb N      largest file in KiB (default 5120)
  --changes N     files deleted, overwritten and added in the acceptance step (default 100)
  --seed N        seed (default 1)
  --use-dist      run the existing dist/ build instead of bundling src/ privately
  --keep          keep the work directory under /tmp
  -h, --help      this help
`;

const o = parseArgs({ files: 10000, minKb: 10, maxKb: 5120, changes: 100, seed: 1, useDist: false, keep: false }, USAGE);
const PASSWORD = 'bench-passphrase-correct-horse';

const resticVersion = ensureRestic();
const timeBin = ensureGnuTime();
const ferry = await ferryCommand({ useDist: o.useDist });
const work = await makeWorkDir('ferry-bench-objects-');
cleanupOnExit([work, ferry.outdir], o.keep);
const startLoad = warnIfBusy();

const TREE = join(work, 'bucket');
const FERRY_REPO = join(work, 'ferry-repo');
const RESTIC_REPO = join(work, 'restic-repo');
const CONFIG = join(work, 'ferry.yaml');
writeFileSync(CONFIG, `assets:\n  - { name: resumes, type: directory, path: "${TREE}" }\n`);
const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FERRY_') && !k.startsWith('RESTIC_')));
const ferryEnv = { ...baseEnv, FERRY_REPO, FERRY_PASSWORD: PASSWORD, FERRY_CONFIG: CONFIG };
const resticEnv = { ...baseEnv, RESTIC_REPOSITORY: RESTIC_REPO, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: join(work, 'restic-cache') };
const run = (t, args, label) => (t === 'ferry' ? measure([...ferry.cmd, ...args], { env: ferryEnv, cwd: work, timeBin, label }) : measure(['restic', ...args], { env: resticEnv, cwd: work, timeBin, label }));

const r = prng(o.seed);
const keyOf = (i) => `uploads/d${String(i % 100).padStart(2, '0')}/resume-${String(i).padStart(6, '0')}.pdf`;
const keys = Array.from({ length: o.files }, (_, i) => keyOf(i));
async function writeObject(key) {
  const path = join(TREE, key);
  mkdirSync(join(path, '..'), { recursive: true });
  const fh = await open(path, 'w');
  const size = r.logInt(o.minKb * 1024, o.maxKb * 1024);
  await fh.write(randomBytesFast(size));
  await fh.close();
  return size;
}

log(`generating ${o.files} files of ${o.minKb} KiB - ${o.maxKb} KiB under ${TREE} ...`);
let total = 0;
for (const k of keys) total += await writeObject(k);
log(`generated ${fmtMiB(total)} MiB`);
await run('ferry', ['init'], 'ferry init');
await run('restic', ['init'], 'restic init');
warmCache(TREE);

const steps = [];
async function step(name, args) {
  const row = { step: name };
  for (const t of ['ferry', 'restic']) {
    log(`${name}: ${t} ...`);
    row[t] = await run(t, args[t], `${t} ${name}`);
    log(`${name}: ${t} ${fmtS(row[t].wallS)} s`);
  }
  steps.push(row);
  return row;
}
const snap = { ferry: ['objects', 'snapshot', 'resumes', '--json'], restic: ['backup', '--json', TREE] };
await step('first snapshot', snap);
await step('unchanged snapshot', snap);
const changed = [];
for (let i = 0; i < Math.max(1, Math.round(o.files / 100)); i++) changed.push(keys[r.int(0, keys.length - 1)]);
for (const k of new Set(changed)) await writeObject(k);
warmCache(TREE);
await step('1%-changed snapshot', snap);
const expectedNow = await hashTree(TREE);
const outAll = { ferry: join(work, 'restore-ferry'), restic: join(work, 'restore-restic') };
await step('restore everything', { ferry: ['objects', 'restore', 'resumes', '--prefix', '', '--to', outAll.ferry], restic: ['restore', 'latest', '--target', outAll.restic] });
const verifyAll = { ferry: compareTrees(expectedNow, await hashTree(outAll.ferry)), restic: compareTrees(expectedNow, await hashTree(join(outAll.restic, TREE))) };
for (const d of Object.values(outAll)) rmSync(d, { recursive: true, force: true });
const one = keys[7];
await step('restore one file', {
  ferry: ['objects', 'restore', 'resumes', one, '--to', join(work, 'one-ferry.pdf')],
  restic: ['restore', 'latest', '--target', join(work, 'one-restic'), '--include', join(TREE, one)],
});

// ------------------------------------------------------------------ acceptance at full size (Ferry)
const t1 = new Date(Date.now() + 1000).toISOString();
await new Promise((res) => setTimeout(res, 1500));
const pool = keys.filter((k) => !changed.includes(k));
const del = pool.slice(0, o.changes);
const over = pool.slice(o.changes, 2 * o.changes);
for (const k of del) rmSync(join(TREE, k));
for (const k of over) await writeObject(k);
for (let i = 0; i < o.changes; i++) await writeObject(keyOf(o.files + i));
const second = await run('ferry', ['objects', 'snapshot', 'resumes', '--json'], 'ferry snapshot after delete/overwrite/add');
const secondInfo = JSON.parse(second.stdout);
const atT1 = join(work, 'restore-t1');
const prefixRestore = await run('ferry', ['objects', 'restore', 'resumes', '--prefix', '', '--at', t1, '--to', atT1, '--json'], 'ferry restore at t1');
const verifyT1 = compareTrees(expectedNow, await hashTree(atT1));
rmSync(atT1, { recursive: true, force: true });
let oneByOne = 0;
const t0 = Date.now();
for (const k of [...del.slice(0, 5), ...over.slice(0, 5)]) {
  await run('ferry', ['objects', 'restore', 'resumes', k, '--at', t1, '--to', join(work, 'single', k.replaceAll('/', '_'))], 'ferry restore one version');
  oneByOne++;
}
const singleS = (Date.now() - t0) / 1000 / oneByOne;
const singles = await hashTree(join(work, 'single'));
const singlesOk = [...singles].every(([p, v]) => expectedNow.get(p.replaceAll('_', '/'))?.sha256 === v.sha256);

// ------------------------------------------------------------------ report
const rows = [['step', 'ferry s', 'restic s', 'ratio (ferry/restic)', 'ferry RSS MiB', 'restic RSS MiB']];
for (const s of steps) rows.push([s.step, fmtS(s.ferry.wallS), fmtS(s.restic.wallS), fmtRatio(s.ferry.wallS, s.restic.wallS), (s.ferry.rssKB / 1024).toFixed(0), (s.restic.rssKB / 1024).toFixed(0)]);
let out = `\nferry objects vs restic: ${o.files} files, ${fmtMiB(total)} MiB (${o.minKb} KiB - ${o.maxKb} KiB); ${machineInfo().cpus} cores; ${resticVersion.split(' compiled')[0]}\n\n`;
out += table(rows) + '(ratio < 1: Ferry is faster)\n\n';
out += `repositories: ferry ${fmtMiB(duBytes(FERRY_REPO))} MiB, restic ${fmtMiB(duBytes(RESTIC_REPO))} MiB\n`;
out += `restore everything verified: ferry ${verifyAll.ferry.ok ? 'OK' : 'FAIL ' + verifyAll.ferry.examples.join('; ')}, restic ${verifyAll.restic.ok ? 'OK' : 'FAIL ' + verifyAll.restic.examples.join('; ')}\n`;
const m = secondInfo.meta;
out += `acceptance: delete ${o.changes}, overwrite ${o.changes}, add ${o.changes}: snapshot ${fmtS(second.wallS)} s (read ${m.added + m.changed}, deleted ${m.deleted}, unchanged ${m.unchanged})\n`;
out += `  whole set as of ${t1} (between the snapshots): ${fmtS(prefixRestore.wallS)} s, ${verifyT1.ok ? 'identical to the listing then (deleted files and older versions byte-identical)' : 'FAIL ' + JSON.stringify(verifyT1)}\n`;
out += `  single deleted/older versions: ${oneByOne} restored, ${singlesOk ? 'byte-identical' : 'FAIL'}, ${fmtS(singleS)} s each\n`;
const file = writeResults('objects', {
  benchmark: 'objects', date: new Date().toISOString(), machine: { ...machineInfo(), loadavgAtStart: startLoad, loadavgAtEnd: warnIfBusy() },
  ferry: gitInfo(), restic: resticVersion, options: o, totalBytes: total,
  steps: steps.map((s) => ({ step: s.step, ferryS: s.ferry.wallS, resticS: s.restic.wallS, ratio: s.ferry.wallS / s.restic.wallS })),
  verifyAll, acceptance: { snapshotS: second.wallS, meta: { ...m, deletedKeys: undefined }, restoreAtT1S: prefixRestore.wallS, verifyT1, singleS, singlesOk },
});
out += `results: ${file}\n`;
process.stdout.write(out);
process.exitCode = verifyAll.ferry.ok && verifyAll.restic.ok && verifyT1.ok && singlesOk ? 0 : 1;
