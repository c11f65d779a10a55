import { Replies } from '../api/verdicts.js';
import type { SessionState } from '../session/session.js';

/** Closes a connection whose DATA arrives slower than limits.minDataRate (slowloris). */
export function dataRateWatchdog(s: SessionState, progress: { bytes: number }): NodeJS.Timeout | undefined {
  const { minDataRate, dataRateWindow } = s.config.limits;
  if (!minDataRate || !dataRateWindow) return undefined;
  let last = 0;
  const timer = setInterval(() => {
    const got = progress.bytes - last;
    last = progress.bytes;
    if (got * 1000 < minDataRate * dataRateWindow) {
      s.log.warn({ client: s.remoteAddress, bytes: got, windowMs: dataRateWindow }, 'DATA too slow, closing connection');
      clearInterval(timer);
      s.connection?.send(Replies.tooSlow.code, `${Replies.tooSlow.enhanced} ${Replies.tooSlow.text}`);
      s.connection?.close();
    }
  }, dataRateWindow);
  timer.unref();
  return timer;
}
