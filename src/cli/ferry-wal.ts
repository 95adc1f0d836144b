/**
 * Entry point of `ferry wal push` and `ferry wal fetch` (dist/ferry-wal.cjs), which
 * PostgreSQL runs once per WAL file as archive_command and restore_command, so their
 * start-up is part of every segment's latency. A CommonJS bundle of just these two
 * commands and what they import (160 KB, one file: no module resolution or linking)
 * pushed a segment in 118 ms here against 149 ms through the ES module graph of the
 * full command line (dist/ferry.mjs), and loads with a code cache (cached-entry.ts). The
 * heavy libraries (the AWS SDK, yaml, zod) are not bundled in: they load from
 * node_modules if a repository on S3 or a config file needs them.
 */
import { main } from './main.ts';
import { walSegmentCommands } from './wal.ts';

void main(process.argv.slice(2), async () => walSegmentCommands).then((code) => {
  process.exitCode = code;
});
