/**
 * The export lifecycle as a pure decision: given the exports (time, tier) and now,
 * which move to the cold tier and which are deleted. The runbook: cold after 90
 * days, deleted after 730. Ages count from the end of the pg_dump run.
 */
import { DAY_MS } from '../util/clock.ts';
import type { Tier } from './meta.ts';

export interface LifecycleRules {
  coldAfterDays: number;
  deleteAfterDays: number;
}

export const RUNBOOK_LIFECYCLE: LifecycleRules = { coldAfterDays: 90, deleteAfterDays: 730 };

export interface LifecycleItem {
  id: string;
  time: string;
  tier: Tier;
}

export type LifecycleAction = 'keep' | 'move' | 'delete';

export interface LifecycleDecision extends LifecycleItem {
  action: LifecycleAction;
  ageDays: number;
  reason: string;
}

export function planLifecycle(items: LifecycleItem[], now: number, rules: LifecycleRules): LifecycleDecision[] {
  return items.map((it) => {
    const age = now - Date.parse(it.time);
    const ageDays = Math.floor(age / DAY_MS);
    if (age >= rules.deleteAfterDays * DAY_MS) return { ...it, ageDays, action: 'delete', reason: `older than ${rules.deleteAfterDays} days` };
    if (age >= rules.coldAfterDays * DAY_MS) {
      return it.tier === 'hot'
        ? { ...it, ageDays, action: 'move', reason: `older than ${rules.coldAfterDays} days` }
        : { ...it, ageDays, action: 'keep', reason: `in the cold tier until ${rules.deleteAfterDays} days` };
    }
    if (age < 0) return { ...it, ageDays, action: 'keep', reason: 'taken after now (clock skew?)' };
    return { ...it, ageDays, action: 'keep', reason: `younger than ${rules.coldAfterDays} days` };
  });
}
