declare module 'pino-roll' {
  import type { EventEmitter } from 'node:events';
  interface PinoRollOptions {
    file: string | (() => string);
    size?: string | number;
    frequency?: 'daily' | 'hourly' | number;
    extension?: string;
    symlink?: boolean;
    limit?: { count?: number; removeOtherLogFiles?: boolean };
    dateFormat?: string;
    mkdir?: boolean;
    maxLength?: number;
    sync?: boolean;
    minLength?: number;
  }
  interface SonicBoomLike extends EventEmitter {
    write(data: string): boolean;
    flush(cb?: (err?: Error) => void): void;
    end(): void;
    readonly file: string;
  }
  export default function roll(opts: PinoRollOptions): Promise<SonicBoomLike>;
}
