import { describePluginConformance } from '@portcullis/testkit';
import { accept, definePlugin } from '@portcullis/core';
import mxRouter from '../src/index.js';

describePluginConformance(mxRouter, {
  options: { port: 2525 },
  invalid: [
    { options: { port: 0 }, path: 'port' },
    { options: { routes: { 'example.com': { nexthop: 'nope' } } }, path: 'routes.example.com.nexthop' },
    { options: { ownAddresses: ['not-an-ip'] }, path: 'ownAddresses[0]' },
  ],
  // Recipients are accepted by a stand-in policy; mx-router routes them from scripted DNS.
  companions: [definePlugin({ name: 'accept-recipients', setup: () => ({ rcpt: () => accept() }) })],
  dns: { 'example.com': { MX: [{ exchange: 'mx.example.com', priority: 10 }] }, 'mx.example.com': { A: ['127.0.0.5'], AAAA: [] } },
});
