/** Blob types: file content and snapshot trees. The envelope itself is in codec/envelope.ts. */
export type BlobType = 'data' | 'tree';
