import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { workerCount } from './shards.js';

/**
 * How many workers a config file asks for, read from the file as written, without the config
 * schema (which the worker mode's primary never loads): `portcullis start` decides with it whether
 * it runs the relay itself or becomes a primary. Anything this cannot read (no file, bad syntax, a
 * `workers` value the schema would refuse) gives 1: the single-process start then validates the
 * whole file and reports every problem, as it always has; a primary has the file validated in full
 * before it forks anything, so a value this accepts is checked there too.
 */
export function peekWorkers(file: string): number {
  let raw: unknown;
  try {
    const text = readFileSync(file, 'utf8');
    raw = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch {
    return 1;
  }
  const w = raw && typeof raw === 'object' ? (raw as { workers?: unknown }).workers : undefined;
  if (w === 'auto' || (typeof w === 'number' && Number.isInteger(w) && w > 1)) return workerCount({ workers: w });
  return 1;
}
