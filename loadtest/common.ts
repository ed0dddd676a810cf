/**
 * Plumbing both load-test entry points share: machine facts for the report header,
 * the project root, and commander argument parsers for bounded numbers.
 */
import { InvalidArgumentError } from 'commander';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface MachineInfo {
  cpusCount: number;
  cpuModel: string;
  totalMemoryMiB: number;
  platform: string;
  node: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpusCount: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown CPU',
    totalMemoryMiB: os.totalmem() / (1024 * 1024),
    platform: `${os.platform()} ${os.release()}`,
    node: process.version,
  };
}

/** The directory of Divan's package.json above this file, else the working directory. */
export function projectRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: unknown };
      if (pkg.name === 'divan') return dir;
    } catch {
      // No package.json here: keep walking up.
    }
    if (path.dirname(dir) === dir) return process.cwd();
  }
}

export function intIn(min: number, max: number): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max) throw new InvalidArgumentError(`an integer from ${min} to ${max}`);
    return value;
  };
}

export function floatIn(min: number, max: number): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (!Number.isFinite(value) || value < min || value > max) throw new InvalidArgumentError(`a number from ${min} to ${max}`);
    return value;
  };
}
