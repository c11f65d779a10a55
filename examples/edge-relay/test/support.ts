// Child processes, swaks and ports for the walkthrough test.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The example's folder (where README.md, portcullis.yaml and the .mjs servers are). */
export const EXAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The built CLI, through the example's own dependency, as setup.sh and run.sh run it. */
export const CLI = path.join(EXAMPLE, 'node_modules/@portcullis/cli/dist/main.js');

export { freePort, waitUntil as waitFor } from '@portcullis/testkit';

/**
 * A child process whose stdout and stderr are appended to a file (not a pipe: the tests block in
 * spawnSync while swaks runs, and a full pipe would stall the child).
 */
export class Child {
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;

  constructor(readonly name: string, cmd: string, args: string[], env: Record<string, string>, readonly outFile: string) {
    const fd = openSync(outFile, 'a');
    this.child = spawn(cmd, args, { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
    closeSync(fd);
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return readFileSync(this.outFile, 'utf8');
  }

  async waitForOutput(re: RegExp, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!re.test(this.output())) {
      if (!this.running) throw new Error(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) before printing ${re}:\n${this.output()}`);
      if (Date.now() > deadline) throw new Error(`${this.name} did not print ${re} within ${ms} ms:\n${this.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited after 10 s. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(t);
  }
}

/** Runs swaks against `server` and returns its exit status and whole transcript (stdout and stderr in order). */
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

/**
 * The server's reply to a command in a swaks transcript: `replyTo(out, 'RCPT TO:<a@b>')` →
 * `550 5.7.1 Unable to relay`. Multi-line replies come back as their lines joined by "\n".
 * swaks marks what it sends with ` -> ` (` ~> ` under TLS) and what it reads with `<- ` (`<~ `),
 * `<** ` (`<~* `) for an error reply.
 */
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
