import pino, { type Logger } from 'pino';

/** JSON lines on stdout (or `destination`), one object per event, with the service name. */
export function createLogger(level: string, destination?: NodeJS.WritableStream | number): Logger {
  const dest = destination === undefined ? stdoutDestination() : typeof destination === 'number' ? pino.destination({ fd: destination, sync: false }) : destination;
  return pino({ level, base: { service: 'portcullis' }, timestamp: pino.stdTimeFunctions.isoTime }, dest as pino.DestinationStream);
}

/** JSON lines on stdout, written off the SMTP path (the worker mode's primary also writes its workers' lines into it). */
export function stdoutDestination(): NodeJS.WritableStream & { flush(cb?: (err?: Error) => void): void } {
  return pino.destination({ fd: 1, sync: false }) as unknown as NodeJS.WritableStream & { flush(cb?: (err?: Error) => void): void };
}

export type { Logger };
