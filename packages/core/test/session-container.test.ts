import assert from 'node:assert/strict';
import { container as root } from 'tsyringe';
import pino from 'pino';
import { SessionState } from '../src/session/session.js';
import { Tokens } from '../src/api/tokens.js';

type Args = ConstructorParameters<typeof SessionState>;

describe("SessionState: the session's child container", () => {
  it('is made on first read, once, with the session registered as Tokens.Session, and not before', () => {
    let made = 0;
    const parent = root.createChildContainer();
    const raw = { id: 's1', remoteAddress: '127.0.0.1' } as unknown as Args[0];
    const s = new SessionState(raw, {} as Args[1], (session) => {
      made++;
      const c = parent.createChildContainer();
      c.registerInstance(Tokens.Session, session);
      return c;
    }, pino({ level: 'silent' }), undefined, {} as Args[5], {} as Args[6], false);
    assert.equal(s.madeContainer, undefined);
    assert.equal(made, 0);
    const c = s.container;
    assert.equal(s.container, c);
    assert.equal(s.madeContainer, c);
    assert.equal(made, 1);
    assert.equal(c.resolve(Tokens.Session), s);
  });

  it('is the container given when one is given (the test kit builds its own)', () => {
    const given = root.createChildContainer();
    const s = new SessionState({ id: 's2' } as unknown as Args[0], {} as Args[1], given, pino({ level: 'silent' }), undefined, {} as Args[5], {} as Args[6], false);
    assert.equal(s.container, given);
  });
});
