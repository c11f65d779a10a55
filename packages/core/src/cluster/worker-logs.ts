import type { Worker } from 'node:cluster';
import type { Readable } from 'node:stream';

/**
 * One log stream for the worker mode: workers write JSON lines to their stdout (a pipe to the
 * primary, `silent: true`), and the primary writes each complete line into its own destination
 * (stdout, or the log file it alone rotates). Whole lines only: a line is never cut by another
 * process's line, which shared file descriptors would allow past PIPE_BUF. Each worker's logger
 * carries `worker: <index>`; what a worker writes to stderr (a crash's stack) comes through too.
 */
export function pipeWorkerOutput(worker: Worker, index: number, sink: { write(line: string): unknown }): void {
  const follow = (stream: Readable | null | undefined, wrap: boolean) => {
    if (!stream) return;
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      rest += chunk;
      const end = rest.lastIndexOf('\n');
      if (end < 0) {
        // A line longer than 1 MiB without an end: pass it on rather than hold it for ever.
        if (rest.length > 1 << 20) (sink.write(rest + '\n'), (rest = ''));
        return;
      }
      const lines = rest.slice(0, end + 1);
      rest = rest.slice(end + 1);
      sink.write(wrap ? wrapText(lines, index) : lines);
    });
    stream.on('end', () => {
      if (rest) sink.write(wrap ? wrapText(rest + '\n', index) : rest + '\n');
      rest = '';
    });
    stream.on('error', () => undefined);
  };
  follow(worker.process.stdout, false);
  follow(worker.process.stderr, true);
}

/** Plain text a worker wrote to stderr (not pino's JSON): one JSON line each, so the stream stays parseable. */
function wrapText(text: string, index: number): string {
  return text
    .split('\n')
    .filter((l) => l.length)
    .map((l) => (l.startsWith('{') ? l : JSON.stringify({ level: 50, time: new Date().toISOString(), service: 'portcullis', worker: index, stderr: l, msg: `worker ${index} stderr: ${l}` })))
    .join('\n') + '\n';
}
