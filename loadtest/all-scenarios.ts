/**
 * The load test's scenarios in the order a run measures them: the core ones
 * (scenarios.ts), the compaction ones (compaction.ts), and memory last, so its peak
 * covers every scenario before it.
 */
import { compactionScenarios } from './compaction';
import { coreScenarios, memoryScenario, type Scenario } from './scenarios';

export const scenarios: readonly Scenario[] = [...coreScenarios, ...compactionScenarios, memoryScenario];
