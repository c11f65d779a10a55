import pino, { type Logger } from 'pino';

/** JSON lines on stdout (or `destination`), one object per event, with the service name. */
export function createLogger(level: string, destination?: NodeJS.WritableStream | number): Logger {
  const dest = destination === undefined ? pino.destination({ fd: 1, sync: false }) : typeof destination === 'number' ? pino.destination({ fd: destination, sync: false }) : destination;
  return pino({ level, base: { service: 'portcullis' }, timestamp: pino.stdTimeFunctions.isoTime }, dest as pino.DestinationStream);
}

export type { Logger };
