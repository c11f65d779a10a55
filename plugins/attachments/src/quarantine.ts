import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

/** The sidecar written next to each quarantined part. */
export interface QuarantineRecord {
  readonly id: string;
  readonly queueId: string;
  readonly messageId?: string;
  readonly sender: string;
  readonly recipients: string[];
  readonly client: string;
  readonly part: string;
  readonly filename?: string;
  readonly contentType: string;
  readonly reason: string;
  readonly rule: string;
  readonly size: number;
  /** The copy stops at `quarantine.maxSize`. */
  readonly truncated: boolean;
  readonly at: string;
}

/**
 * Keeps a copy of a part for the administrator: `<id>.bin` (the decoded bytes) and `<id>.json`.
 * Both are written before the message is accepted; the copy is made from the inspector's temp file.
 */
export async function quarantinePart(dir: string, source: string | undefined, record: Omit<QuarantineRecord, 'id' | 'at'>): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const id = `${record.queueId}-${record.part.replace(/[^0-9A-Za-z.]/g, '_')}-${randomBytes(4).toString('hex')}`;
  if (source) await copyFile(source, path.join(dir, `${id}.bin`));
  else await writeFile(path.join(dir, `${id}.bin`), Buffer.alloc(0), { mode: 0o600 });
  const full: QuarantineRecord = { id, ...record, at: new Date().toISOString() };
  await writeFile(path.join(dir, `${id}.json`), JSON.stringify(full, null, 2) + '\n', { mode: 0o600 });
  return id;
}
