import { readFileSync } from 'node:fs';

/** This package's version (from its package.json), for /metrics and `portcullis --version`. */
export const coreVersion: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
