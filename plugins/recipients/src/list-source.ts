import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from './source.js';
import type { ListSourceOptions } from './options.js';
import { parseListEntry, type RecipientAddress } from './recipient-address.js';
import type { RecipientSource, SourceAnswer } from './source.js';

interface Entries {
  readonly addresses: Set<string>;
  readonly domains: Set<string>;
}

interface ListFile {
  readonly file: string;
  mtimeMs: number;
  size: number;
  entries: Entries;
}

/** How often a lookup may stat the files to see whether they changed. */
const STAT_INTERVAL_MS = 1000;

function parse(text: string, where: string, log?: Logger): Entries {
  const entries: Entries = { addresses: new Set(), domains: new Set() };
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const e = parseListEntry(line);
    if (!e) {
      log?.warn({ file: where, line: i + 1, entry: line }, 'recipients list: not an address or @domain, ignored');
      return;
    }
    if (e.address) entries.addresses.add(e.address);
    if (e.domain) entries.domains.add(e.domain);
  });
  return entries;
}

/**
 * Addresses and `@domain` catch-alls, inline and in files. The files are read at setup (a missing
 * file is a config error) and again when their size or mtime changes; a file that cannot be read
 * later keeps its last good copy (logged), so a botched deploy does not turn every user unknown.
 */
export class ListSource implements RecipientSource {
  readonly type = 'list' as const;
  readonly cached = false;
  private readonly inline: Entries;
  private readonly files: ListFile[];
  private lastStat = 0;

  constructor(readonly name: string, opts: ListSourceOptions, configDir: string, private readonly log: Logger) {
    this.inline = parse(opts.addresses.join('\n'), `sources.${name}.list.addresses`, log);
    this.files = opts.files.map((f) => {
      const file = path.resolve(configDir, f);
      const st = statSync(file);
      return { file, mtimeMs: st.mtimeMs, size: st.size, entries: parse(readFileSync(file, 'utf8'), file, log) };
    });
  }

  private refresh(): void {
    const now = Date.now();
    if (now - this.lastStat < STAT_INTERVAL_MS) return;
    this.lastStat = now;
    for (const f of this.files) {
      try {
        const st = statSync(f.file);
        if (st.mtimeMs === f.mtimeMs && st.size === f.size) continue;
        f.entries = parse(readFileSync(f.file, 'utf8'), f.file, this.log);
        f.mtimeMs = st.mtimeMs;
        f.size = st.size;
        this.log.info({ source: this.name, file: f.file, addresses: f.entries.addresses.size, domains: f.entries.domains.size }, 'recipients list re-read');
      } catch (err) {
        this.log.warn({ source: this.name, file: f.file, err: (err as Error).message }, 'recipients list cannot be read: the last good copy stays in use');
      }
    }
  }

  async lookup(addr: RecipientAddress): Promise<SourceAnswer> {
    this.refresh();
    const all = [{ where: 'inline', e: this.inline }, ...this.files.map((f) => ({ where: path.basename(f.file), e: f.entries }))];
    for (const candidate of [addr.address, addr.base]) {
      if (!candidate) continue;
      const hit = all.find((x) => x.e.addresses.has(candidate));
      if (hit) return { result: 'known', detail: `${candidate} in list ${hit.where}` };
    }
    const dom = all.find((x) => x.e.domains.has(addr.domain));
    if (dom) return { result: 'known', detail: `@${addr.domain} (catch-all) in list ${dom.where}`, catchAll: true };
    return { result: 'unknown', detail: `not in list ${all.map((x) => x.where).join(', ')}` };
  }

  async close(): Promise<void> {}
}
