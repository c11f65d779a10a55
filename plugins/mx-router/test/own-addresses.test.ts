import assert from 'node:assert/strict';
import { OwnAddresses, splitHostPort } from '../src/own-addresses.js';

describe('own addresses (mail-loop check)', () => {
  it('matches a listener by address and port only', () => {
    const own = new OwnAddresses(['127.0.0.1:2525', '::1:2526'], [], []);
    assert.equal(own.has('127.0.0.1', 2525), true);
    assert.equal(own.has('127.0.0.1', 25), false);
    assert.equal(own.has('127.0.0.2', 2525), false);
    assert.equal(own.has('::1', 2526), true);
    assert.equal(own.has('0:0:0:0:0:0:0:1', 2526), true);
    assert.equal(own.has('::ffff:127.0.0.1', 2525), true);
  });

  it('treats a wildcard listener as every interface address and all of loopback', () => {
    const own = new OwnAddresses(['0.0.0.0:25'], [], ['192.0.2.10', '2001:db8::10']);
    assert.equal(own.has('192.0.2.10', 25), true);
    assert.equal(own.has('127.0.0.53', 25), true);
    assert.equal(own.has('192.0.2.11', 25), false);
    assert.equal(own.has('2001:db8::10', 25), false, 'an IPv4 wildcard does not listen on IPv6');
    const dual = new OwnAddresses(['[::]:25'], [], ['2001:db8::10']);
    assert.equal(dual.has('2001:db8::10', 25), true);
    assert.equal(dual.has('::1', 25), true);
  });

  it('counts configured extra addresses on every listening port, and ignores port-0 listeners', () => {
    const own = new OwnAddresses(['127.0.0.1:25', '127.0.0.1:587', '127.0.0.2:0'], ['198.51.100.7'], []);
    assert.equal(own.has('198.51.100.7', 25), true);
    assert.equal(own.has('198.51.100.7', 587), true);
    assert.equal(own.has('198.51.100.7', 2525), false);
    assert.equal(own.has('127.0.0.2', 0), false);
  });

  it('splits host:port at the last colon', () => {
    assert.deepEqual(splitHostPort('127.0.0.1:25'), { host: '127.0.0.1', port: 25 });
    assert.deepEqual(splitHostPort('[::1]:25'), { host: '::1', port: 25 });
    assert.deepEqual(splitHostPort('::1:25'), { host: '::1', port: 25 });
    assert.equal(splitHostPort('nohost'), undefined);
  });
});
