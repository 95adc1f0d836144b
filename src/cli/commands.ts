/**
 * The command groups the CLI knows, in help order. Each group's module is loaded
 * only when its first word is used (`ferry wal push` never loads node-postgres or
 * the PostgreSQL snapshot code), which keeps the per-segment start-up of
 * archive_command small. `--help` loads them all.
 */
import type { Command } from './command.ts';

interface CommandGroup {
  /** First words of the group's commands. */
  words: string[];
  load: () => Promise<Command[]>;
}

const groups: CommandGroup[] = [
  { words: ['init', 'key', 'repo', 'check', 'snapshots', 'forget', 'prune', 'unlock'], load: async () => (await import('./repo.ts')).repoCommands },
  { words: ['files'], load: async () => (await import('./files.ts')).filesCommands },
  { words: ['pg'], load: async () => (await import('./pg.ts')).pgCommands },
  { words: ['wal'], load: async () => (await import('./wal.ts')).walCommands },
  { words: ['pg', 'expire'], load: async () => (await import('./pgverify.ts')).retentionCommands },
  { words: ['pg'], load: async () => (await import('./export.ts')).exportCommands },
  { words: ['pg'], load: async () => (await import('./restoretable.ts')).restoreTableCommands },
  { words: ['incident'], load: async () => (await import('./incident.ts')).incidentCommands },
  { words: ['objects', 'audit'], load: async () => (await import('./objects.ts')).objectsCommands },
  { words: ['secrets', 'git'], load: async () => (await import('./secrets.ts')).secretsCommands },
  { words: ['repo', 'status'], load: async () => (await import('./copy.ts')).copyCommands },
  { words: ['demo'], load: async () => (await import('./demo.ts')).demoCommands },
];

/** The commands whose first word is `first` (all commands when it matches no group or is not given). */
export async function loadCommands(first?: string): Promise<Command[]> {
  const wanted = first === undefined ? [] : groups.filter((g) => g.words.includes(first));
  const chosen = wanted.length ? wanted : groups;
  return (await Promise.all(chosen.map((g) => g.load()))).flat();
}
