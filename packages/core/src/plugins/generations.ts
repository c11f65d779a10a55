import type { PluginDriver } from './driver.js';

/**
 * A driver per configuration generation. New sessions take the current one; a reload makes a new
 * one current and retires the old, which is closed once no session uses it and its grace period (for
 * deliveries that started with it) is over.
 */
export class DriverGenerations {
  /** Sessions still using each driver: a replaced driver is closed once none does. */
  private readonly users = new Map<PluginDriver, number>();
  /** Replaced drivers, closed once no session uses them and their grace period is over. */
  private readonly retired = new Map<PluginDriver, { graceOver: boolean }>();

  constructor(private active: PluginDriver) {}

  /** The plugins new sessions and delivery attempts use. */
  get current(): PluginDriver {
    return this.active;
  }

  /** A session starts with the current driver and keeps it. */
  take(): PluginDriver {
    const driver = this.active;
    this.users.set(driver, (this.users.get(driver) ?? 0) + 1);
    return driver;
  }

  release(driver: PluginDriver): void {
    const n = (this.users.get(driver) ?? 1) - 1;
    if (n > 0) this.users.set(driver, n);
    else this.users.delete(driver);
    this.closeIfUnused(driver);
  }

  /** Sessions using a driver now. */
  usersOf(driver: PluginDriver): number {
    return this.users.get(driver) ?? 0;
  }

  /** Makes `next` current; the old driver is closed after `graceMs` once no session uses it. Returns the old one. */
  replace(next: PluginDriver, graceMs = 30_000): PluginDriver {
    const old = this.active;
    this.active = next;
    const entry = { graceOver: false };
    this.retired.set(old, entry);
    setTimeout(() => {
      entry.graceOver = true;
      this.closeIfUnused(old);
    }, graceMs).unref();
    return old;
  }

  /** Stop: the current driver, then every retired one. */
  async closeAll(): Promise<void> {
    await this.active.close();
    for (const d of this.retired.keys()) await d.close();
    this.retired.clear();
  }

  private closeIfUnused(driver: PluginDriver): void {
    const r = this.retired.get(driver);
    if (!r || !r.graceOver || this.users.has(driver)) return;
    this.retired.delete(driver);
    void driver.close();
  }
}
