/**
 * Imported by pglib.ts just before node-postgres (see there): a `navigator` with Node's
 * user agent while node-postgres loads, on a Node that has none (20).
 */
const g = globalThis as { navigator?: unknown };

export const shimmed = g.navigator === undefined;
if (shimmed) Object.defineProperty(globalThis, 'navigator', { value: { userAgent: `Node.js/${process.versions.node}` }, configurable: true, writable: true });
