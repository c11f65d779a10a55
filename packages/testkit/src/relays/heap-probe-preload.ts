// Loaded into a relay process by HeapProbe (node --expose-gc --import this-file): on SIGUSR2 it runs
// a full garbage collection and writes process.memoryUsage() as JSON to $PORTCULLIS_HEAP_PROBE.
// Test instrumentation only: nothing in the relay knows about it. Not exported: it is a preload.
import { writeFileSync } from 'node:fs';

process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  writeFileSync(process.env['PORTCULLIS_HEAP_PROBE']!, JSON.stringify(process.memoryUsage()));
});
