// Child processes, swaks and ports for the custom-screener tests.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RelayProcess } from '@portcullis/testkit';

/** The example's folder (README.md, portcullis.yaml, subject-words.js). */
export const EXAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The built CLI, through the example's own dependency. */
export const CLI = path.join(EXAMPLE, 'node_modules/@portcullis/cli/dist/main.js');

export { freePort, RelayProcess, waitUntil as waitFor } from '@portcullis/testkit';

/** `portcullis start --config FILE` with the example's own CLI, its output appended to `logFile`; resolves once it listens on `port`. */
export async function startRelay(config: string, port: number, logFile: string): Promise<RelayProcess> {
  const relay = new RelayProcess(config, port, { cli: CLI, logFile, readyMs: 20_000, killAfterMs: 10_000 });
  await relay.start();
  return relay;
}

/** Runs `portcullis ARGS` to completion. */
export function portcullis(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs swaks against `server`; returns its exit status and transcript (stdout and stderr in order). */
export function swaks(server: string, args: string[]): { status: number | null; out: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'swaks-'));
  try {
    const file = path.join(dir, 'transcript');
    const fd = openSync(file, 'w');
    const r = spawnSync('swaks', ['--server', server, ...args], { stdio: ['ignore', fd, fd], timeout: 40_000 });
    closeSync(fd);
    if (r.error) throw new Error(`cannot run swaks (${r.error.message}): install it with apt-get install swaks`);
    return { status: r.status, out: readFileSync(file, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The server's reply to `command` in a swaks transcript (` -> CMD` then `<- ` / `<** ` lines). */
export function replyTo(transcript: string, command: string): string {
  const lines = transcript.split('\n');
  const at = lines.findIndex((l) => /^ [-~]> /.test(l) && l.slice(4) === command);
  assert.ok(at >= 0, `swaks did not send ${JSON.stringify(command)}:\n${transcript}`);
  const reply: string[] = [];
  for (const l of lines.slice(at + 1)) {
    const m = /^<(?:-|~|\*\*|~\*) +(.*)$/.exec(l);
    if (m) reply.push(m[1]!);
    else if (reply.length || /^ [-~]> /.test(l)) break;
  }
  return reply.join('\n');
}
