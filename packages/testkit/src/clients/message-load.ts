import type { CaptureServer } from '../servers/capture-server.js';
import { RawSmtp } from './raw-smtp.js';

/** How one numbered message fared: a 250 to its final dot, another reply, or no reply at all (the connection died). */
export type SendOutcome = 'acked' | 'refused' | 'lost';

export interface NumberedMessageOptions {
  /** Body lines of `payload line` (default 40: a message of about 600 bytes). */
  readonly lines?: number;
  readonly subject?: string;
  /** How long to wait for the greeting (default 10 s) and for the reply to the final dot (default 15 s). */
  readonly greetingMs?: number;
  readonly replyMs?: number;
}

/**
 * One message with `Message-ID: <id>` from load@client.test to sink@example.com over its own raw
 * connection: the unit of the fault and load tests, which count what got a 250 by id and look for
 * each id at the next hop (`messageIds`). Never throws: a relay killed mid-transaction is an outcome.
 */
export async function sendNumbered(port: number, id: string, o: NumberedMessageOptions = {}): Promise<SendOutcome> {
  let c: RawSmtp | undefined;
  try {
    c = await RawSmtp.connect(port);
    if (!(await c.read(o.greetingMs ?? 10_000)).startsWith('220')) return 'refused';
    await c.cmd('EHLO load.test');
    if (!(await c.cmd('MAIL FROM:<load@client.test>')).startsWith('250')) return 'refused';
    if (!(await c.cmd('RCPT TO:<sink@example.com>')).startsWith('250')) return 'refused';
    if (!(await c.cmd('DATA')).startsWith('354')) return 'refused';
    c.write(`Message-ID: <${id}>\r\nSubject: ${o.subject ?? 'load test'}\r\n\r\n${'payload line\r\n'.repeat(o.lines ?? 40)}.\r\n`);
    return (await c.read(o.replyMs ?? 15_000)).startsWith('250') ? 'acked' : 'refused';
  } catch {
    return 'lost';
  } finally {
    c?.close();
  }
}

export interface LoadOptions extends NumberedMessageOptions {
  /** Ids are `<prefix>-<n>@client.test`, n from 0. */
  readonly prefix: string;
  readonly total: number;
  /** Connections at a time (each sends one message, then the next one opens). */
  readonly concurrency: number;
  /** Attempts per message: one that failed is sent again, as a real client would (default 20, 50 ms apart). */
  readonly tries?: number;
  /** The whole load stops after this long (default 150 s): a bounded loop. */
  readonly deadlineMs?: number;
  /** Awaited before every attempt (e.g. a relay restart in progress). */
  readonly beforeAttempt?: () => Promise<unknown> | undefined;
  /** Called after each 250 with the number acknowledged so far (a fault test kills the relay here). */
  readonly onAck?: (acked: number) => void | Promise<void>;
}

/** Sends `total` numbered messages; returns the ids that got a 250, the attempts made and how many failed. */
export async function sendLoad(port: number, o: LoadOptions): Promise<{ acked: Set<string>; attempts: number; failures: number }> {
  const acked = new Set<string>();
  let next = 0;
  let attempts = 0;
  let failures = 0;
  const deadline = Date.now() + (o.deadlineMs ?? 150_000);
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      while (next < o.total && Date.now() < deadline) {
        const id = `${o.prefix}-${next++}@client.test`;
        for (let tries = 0; tries < (o.tries ?? 20) && Date.now() < deadline; tries++) {
          await o.beforeAttempt?.();
          attempts++;
          if ((await sendNumbered(port, id, o)) === 'acked') {
            acked.add(id);
            await o.onAck?.(acked.size);
            break;
          }
          failures++;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }),
  );
  return { acked, attempts, failures };
}

/** The Message-IDs (without brackets) of what reached `sink`, in arrival order, one per delivery. */
export function messageIds(sink: CaptureServer): string[] {
  return sink.messages.map((m) => /Message-ID: <([^>]+)>/i.exec(m.raw.toString())?.[1]).filter((x): x is string => !!x);
}
