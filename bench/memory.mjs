#!/usr/bin/env node
// Memory benchmark: snapshot a large tree with Ferry only and report peak RSS (limit 300 MB) and throughput.
// Usage: node bench/memory.mjs [--size-gb N] [--keep] ... (see USAGE). bench/README.md explains the output.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  GiB, MiB, TEXT_KINDS, cleanupOnExit, compareTrees, duBytes, ensureGnuTime, ferryCommand, fmtMiB, fmtS, gitInfo, hashTree, log,
  machineInfo, makeWorkDir, measure, nibbleBytes, open, parseArgs, prng, randomBytesFast, table, textBytes, warnIfBusy, writeResults,
} from './lib.mjs';

const USAGE = `Usage: node bench/memory.mjs [options]

Generates a large tree (files of --file-gb GiB of random-ish data plus a few thousand small files),
snapshots it with Ferry and reports peak RSS (must stay under --limit-mb) and throughput.
Writes bench/results/memory-<time>.json. Exit code 1 when the limit is exceeded or a step fails.

Options:
  --size-gb N     approximate tree size in GiB (default 10)
  --file-gb N     size of each large file in GiB (default 1)
  --files N       number of small files, 1-64 KiB each (default 3000)
  --limit-mb N    peak RSS limit in MB (10^6 bytes; default 300)
  --restore       also restore the snapshot into an empty directory, report its peak RSS and verify it
  --use-dist      run the existing dist/ build (bin/ferry) instead of bundling src/ privately
  --keep          keep the work directory under /tmp
  -h, --help      this help
`;

const o = parseArgs({ sizeGb: 10, fileGb: 1, files: 3000, limitMb: 300, restore: false, useDist: false, keep: false }, USAGE);
o.files = Math.round(o.files);
const PASSWORD = 'bench-passphrase-correct-horse';

const timeBin = ensureGnuTime();
const ferry = await ferryCommand({ useDist: o.useDist });
const work = await makeWorkDir('ferry-bench-memory-');
cleanupOnExit([work, ferry.outdir], o.keep);
log(`work dir ${work}; ferry: ${ferry.cmd.join(' ')}`);
const startLoad = warnIfBusy();

const TREE = join(work, 'tree');
const REPO = join(work, 'ferry-repo');
const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FERRY_'))), FERRY_REPO: REPO, FERRY_PASSWORD: PASSWORD };

// ------------------------------------------------------------------ tree
const r = prng(42);
const small = [];
for (let i = 0; i < o.files; i++) {
  const kind = r.next() < 0.6 ? r.pick(TEXT_KINDS) : 'random';
  small.push({ rel: `small/s${String(Math.floor(i / 100)).padStart(3, '0')}/f${String(i).padStart(5, '0')}.${kind === 'random' ? 'bin' : kind}`, size: r.logInt(1024, 64 * 1024), kind });
}
const smallBytes = small.reduce((a, f) => a + f.size, 0);
const nLarge = Math.max(1, Math.round(o.sizeGb / o.fileGb));
const largeSize = Math.max(MiB, Math.floor((o.sizeGb * GiB - smallBytes) / nLarge / MiB) * MiB);

log(`generating ${nLarge} x ${fmtMiB(largeSize)} MiB + ${o.files} small files under ${TREE} ...`);
let t0 = Date.now();
mkdirSync(join(TREE, 'large'), { recursive: true });
for (let i = 0; i < nLarge; i++) {
  // random-ish: alternating 4 MiB blocks of random bytes (incompressible) and random nibbles (~55% after zstd)
  const fh = await open(join(TREE, 'large', `data${String(i).padStart(2, '0')}.bin`), 'w');
  for (let done = 0, k = i; done < largeSize; k++) {
    const n = Math.min(4 * MiB, largeSize - done);
    await fh.write(k % 2 ? nibbleBytes(n) : randomBytesFast(n));
    done += n;
  }
  await fh.close();
}
for (const f of small) {
  mkdirSync(join(TREE, f.rel, '..'), { recursive: true });
  const fh = await open(join(TREE, f.rel), 'w');
  await fh.write(f.kind === 'random' ? randomBytesFast(f.size) : textBytes(f.kind, f.size, r));
  await fh.close();
}
const genS = (Date.now() - t0) / 1000;
const treeBytes = duBytes(TREE);
log(`generated ${fmtMiB(treeBytes)} MiB in ${genS.toFixed(1)} s`);

// ------------------------------------------------------------------ run
await measure([...ferry.cmd, 'init'], { env, cwd: work, timeBin, label: 'ferry init' });
log('ferry files snapshot ...');
const snap = await measure([...ferry.cmd, 'files', 'snapshot', TREE, '--json'], { env, cwd: work, timeBin, label: 'ferry files snapshot', allowFail: true });
const results = [];
const record = (name, m, bytes, info) => {
  const rssMB = m.rssKB == null ? null : (m.rssKB * 1024) / 1e6;
  const row = { step: name, ok: m.code === 0, wallS: +m.wallS.toFixed(3), peakRssMB: rssMB == null ? null : +rssMB.toFixed(1), userS: m.userS, sysS: m.sysS, MiBps: +(bytes / MiB / m.wallS).toFixed(1), withinLimit: rssMB != null && rssMB < o.limitMb, info };
  if (m.code !== 0) row.error = m.stderr.slice(-2000);
  results.push(row);
  log(`${name}: ${row.ok ? 'ok' : `FAILED (exit ${m.code})`}, ${fmtS(row.wallS)} s, ${row.MiBps} MiB/s, peak RSS ${row.peakRssMB} MB`);
  if (!row.ok) process.stderr.write(row.error + '\n');
  return row;
};
let snapInfo = null;
try {
  snapInfo = JSON.parse(snap.stdout).stats;
} catch {
  /* failed */
}
record('snapshot', snap, treeBytes, snapInfo);
const repoBytes = snap.code === 0 ? duBytes(REPO) : null;

let verify = null;
if (o.restore && snap.code === 0) {
  const target = join(work, 'restore');
  log('ferry files restore ...');
  const m = await measure([...ferry.cmd, 'files', 'restore', 'latest', target, '--json'], { env, cwd: work, timeBin, label: 'ferry files restore', allowFail: true });
  let info = null;
  try {
    info = JSON.parse(m.stdout);
  } catch {
    /* failed */
  }
  record('restore', m, treeBytes, info);
  if (m.code === 0) {
    log('verifying the restore (sha256 of every file)');
    verify = compareTrees(await hashTree(TREE), await hashTree(target));
    log(`verify: ${verify.ok ? 'OK' : `FAIL: ${verify.missing} missing, ${verify.extra} extra, ${verify.differ} differ; ${verify.examples.join('; ')}`}`);
  }
}

// ------------------------------------------------------------------ report
const endLoad = warnIfBusy();
const rows = [['step', 'result', 'wall s', 'MiB/s', 'peak RSS MB', `< ${o.limitMb} MB`, 'cpu s']];
for (const x of results) rows.push([x.step, x.ok ? 'ok' : 'FAILED', fmtS(x.wallS), x.MiBps.toFixed(0), x.peakRssMB == null ? '-' : x.peakRssMB.toFixed(0), x.withinLimit ? 'PASS' : 'FAIL', x.userS == null ? '-' : fmtS(x.userS + x.sysS)]);
let out = `\nFerry memory: tree ${fmtMiB(treeBytes)} MiB (${nLarge} x ${fmtMiB(largeSize)} MiB random-ish + ${o.files} small files, ${fmtMiB(smallBytes)} MiB); ${machineInfo().cpus} cores\n\n`;
out += table(rows);
if (snapInfo) out += `snapshot: ${snapInfo.filesRead}/${snapInfo.files} files read, new ${fmtMiB(snapInfo.newBytes)} MiB -> stored ${fmtMiB(snapInfo.storedBytes)} MiB; repository ${fmtMiB(repoBytes)} MiB (${((100 * repoBytes) / treeBytes).toFixed(1)}% of the tree)\n`;
if (verify) out += `restore verification: ${verify.ok ? 'OK' : 'FAIL'} (${verify.files} files)\n`;
const file = writeResults('memory', {
  benchmark: 'memory',
  date: new Date().toISOString(),
  machine: { ...machineInfo(), loadavgAtStart: startLoad, loadavgAtEnd: endLoad },
  ferry: { ...gitInfo(), command: o.useDist ? 'bin/ferry (dist/)' : 'private bundle of src/' },
  rssSource: timeBin ? 'GNU time %M' : '/proc VmHWM polling',
  options: o,
  tree: { bytes: treeBytes, largeFiles: nLarge, largeFileBytes: largeSize, smallFiles: o.files, smallBytes, generateS: genS },
  repoBytes,
  steps: results,
  verify,
});
out += `results: ${file}\n`;
process.stdout.write(out);
process.exitCode = results.every((x) => x.ok && x.withinLimit) && (!verify || verify.ok) ? 0 : 1;
