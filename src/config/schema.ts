/**
 * The shape of ferry.yaml. Everything is optional: the everyday commands also
 * work with no file at all (flags and environment), like WAL-G.
 */
import { z } from 'zod';

export const RepositorySchema = z
  .object({
    url: z.string().min(1),
    /** Path of a file holding the passphrase (never the passphrase itself). */
    password_file: z.string().optional(),
    /** Path of a key file (raw key material, mode 0600). */
    key_file: z.string().optional(),
    s3_endpoint: z.string().optional(),
    compression_level: z.number().int().min(0).max(19).optional(),
    /** Cold tier for compliance exports (another path, bucket or prefix); see docs/exports.md. */
    cold_url: z.string().min(1).optional(),
  })
  .strict();

export const FileSchema = z
  .object({
    repository: RepositorySchema.optional(),
    assets: z.array(z.record(z.string(), z.unknown())).optional(),
    policy: z.record(z.string(), z.unknown()).optional(),
  })
  .passthrough();

export type FerryFile = z.infer<typeof FileSchema>;
