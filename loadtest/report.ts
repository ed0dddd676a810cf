/**
 * Results of one run: collected per scenario and server, rendered as a Markdown
 * table (absolute figures and the ratio Divan/peer, ready to paste into README.md)
 * and as JSON (everything, including latency details and error samples).
 * Pure: rendering takes the results and returns text; the caller writes it.
 */
import type { MetricSpec, ScenarioOutcome } from './scenarios';
import type { ServerKind } from './servers';

export interface ServerInfo {
  label: string;
  version: string | null;
  port: number;
  pid: number;
}

/** A server's outcome of one scenario, or why it has none. */
export type ServerOutcome = ({ kind: 'done' } & ScenarioOutcome) | { kind: 'failed'; error: string };

export interface ScenarioReport {
  key: string;
  title: string;
  metrics: MetricSpec[];
  outcomes: Partial<Record<ServerKind, ServerOutcome>>;
}

export interface RunReport {
  generatedAt: string;
  interrupted: boolean;
  machine: { cpusCount: number; cpuModel: string; totalMemoryMiB: number; platform: string; node: string };
  options: Record<string, unknown>;
  servers: Partial<Record<ServerKind, ServerInfo>>;
  scenarios: ScenarioReport[];
}

export function metricValue(outcome: ServerOutcome | undefined, key: string): number | null {
  if (outcome === undefined || outcome.kind !== 'done') return null;
  return outcome.metrics[key] ?? null;
}

export function ratioOf(divan: number | null, peer: number | null): number | null {
  if (divan === null || peer === null || peer === 0) return null;
  return divan / peer;
}

/** The JSON file: the run plus, per metric, both values and the ratio. */
export function renderJson(report: RunReport): string {
  const scenarios = report.scenarios.map((scenario) => ({
    ...scenario,
    metrics: scenario.metrics.map((metric) => {
      const divan = metricValue(scenario.outcomes.divan, metric.key);
      const peer = metricValue(scenario.outcomes.peer, metric.key);
      return { ...metric, divan, peer, ratio: ratioOf(divan, peer) };
    }),
  }));
  return JSON.stringify({ ...report, scenarios }, null, 2) + '\n';
}

export function renderMarkdown(report: RunReport): string {
  const columns = (['divan', 'peer'] as const)
    .filter((kind) => report.servers[kind] !== undefined)
    .map((kind) => ({ kind, label: report.servers[kind]?.label ?? kind }));
  const withRatio = columns.length === 2;
  const { machine, options } = report;
  const lines: string[] = [];
  lines.push(
    `Load test, ${report.generatedAt.slice(0, 10)}${report.interrupted ? ' (interrupted: partial)' : ''}: ` +
      `${machine.cpusCount} × ${machine.cpuModel}, ${machine.totalMemoryMiB.toFixed(0)} MiB, Node ${machine.node}; ` +
      `client concurrency ${String(options.concurrency)}, ${String(options.seconds)} s per timed scenario, ` +
      `scans over ${formatCount(Number(options.docs))} docs, replication of ${formatCount(Number(options.replicateDocs))} docs, ` +
      `views over ${formatCount(Number(options.viewDocs))} docs, _find over ${formatCount(Number(options.findDocs))} docs; ` +
      `Basic auth, loopback, servers and client on the same machine.`,
    '',
    `| Scenario | Metric | ${columns.map((c) => c.label).join(' | ')} |${withRatio ? ' Divan/peer |' : ''}`,
    `|---|---|${columns.map(() => '--:|').join('')}${withRatio ? '--:|' : ''}`,
  );
  const notes: string[] = [];
  for (const scenario of report.scenarios) {
    scenario.metrics.forEach((metric, index) => {
      const cells = columns.map(({ kind }) => cell(scenario.outcomes[kind], metricValue(scenario.outcomes[kind], metric.key)));
      if (withRatio) {
        const ratio = ratioOf(metricValue(scenario.outcomes.divan, metric.key), metricValue(scenario.outcomes.peer, metric.key));
        cells.push(ratio === null ? '–' : ratio.toFixed(2));
      }
      const arrow = metric.better === 'higher' ? '↑' : '↓';
      lines.push(`| ${index === 0 ? scenario.title : ''} | ${metric.label} ${arrow} | ${cells.join(' | ')} |`);
    });
    for (const { kind, label } of columns) {
      const outcome = scenario.outcomes[kind];
      if (outcome === undefined) continue;
      if (outcome.kind === 'failed') notes.push(`${scenario.title}, ${label}: failed: ${oneLine(outcome.error)}`);
      else if (outcome.errors > 0) notes.push(`${scenario.title}, ${label}: ${outcome.errors} errors, e.g. ${oneLine(outcome.errorSamples[0] ?? '')}`);
    }
  }
  lines.push('', `↑ higher is better, ↓ lower is better${withRatio ? '; the ratio is Divan ÷ peer' : ''}.`);
  if (notes.length > 0) lines.push('', ...notes.map((note) => `- ${note}`));
  return lines.join('\n') + '\n';
}

function cell(outcome: ServerOutcome | undefined, value: number | null): string {
  if (outcome === undefined) return '–';
  if (outcome.kind === 'failed') return 'failed';
  return value === null ? 'n/a' : formatNumber(value);
}

/** Three significant figures at most below 100, whole numbers with separators above. */
export function formatNumber(value: number): string {
  if (Math.abs(value) >= 100) return formatCount(Math.round(value));
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function formatCount(value: number): string {
  return value.toLocaleString('en-US');
}

function oneLine(text: string): string {
  const line = text.split('\n')[0];
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}
