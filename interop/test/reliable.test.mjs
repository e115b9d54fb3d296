// Reliable delivery through the official JS client (CONFORMANCE.md, "Reliable delivery in the conformance
// server"): SendReliable into a user's mailbox, Deliver as a client result whose returned value is the ack,
// receipts, retries after nacks, order, expiry, several connections of one user, and mailboxes on --store that
// survive a restart.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { connect, protocols } from '../lib/client.mjs';
import { RS, jsonHubSocket, nextMessage } from '../lib/raw.mjs';
import { deliveries, eventually, gate, receipts } from '../lib/reliable.mjs';
import { startServer } from '../lib/server.mjs';

/**
 * How long a test watches for something that must not come: longer than the first redelivery backoff (500 ms
 * ± 20 %), so a message wrongly taken as nacked would show up again. (A lost ack would only show after the 5 s ack
 * timeout; the receipt and PendingCount catch that instead.)
 */
const QUIET_MS = 700;

const [json, messagepack] = protocols;

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  assert.equal(await server.stop(), 0, server.stderr());
});

// Every connection a test opens is stopped after it.
const open = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((connection) => connection.stop()));
});

/** A started connection (see `connect`) to `hubUrl`, stopped after the test. */
async function client(protocol, options, hubUrl = server.hubUrl) {
  const connection = await connect(hubUrl, protocol, options);
  open.push(connection);
  return connection;
}

// Mailboxes outlive connections, so every test has users of its own on the shared server.
let users = 0;
function user(name) {
  users += 1;
  return `${name}-${users}`;
}

const pendingCount = (connection) => connection.invoke('PendingCount');

for (const protocol of protocols) {
  describe(`reliable delivery over ${protocol.name}`, () => {
    it('a message to an offline user comes once when they connect; PendingCount is 1 until the ack; the sender gets a delivered receipt', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const aliceReceipts = receipts();
      const a = await client(protocol, { token: alice, handlers: { Receipt: aliceReceipts.handler } });
      const id = await a.invoke('SendReliable', bob, 'hello bob');
      assert.equal(typeof id, 'string');
      assert.notEqual(id, '');

      const ack = gate();
      const bobDeliveries = deliveries(() => ack.opened.then(() => 'thanks'));
      const b = await client(protocol, { token: bob, handlers: { Deliver: bobDeliveries.handler } });
      assert.deepEqual(await bobDeliveries.next(), { id, from: alice, text: 'hello bob' });
      // The handler has not returned yet: the message still awaits its ack.
      assert.equal(await pendingCount(b), 1);
      assert.deepEqual(aliceReceipts.all(), []);

      ack.open();
      assert.deepEqual(await aliceReceipts.next(), [id, 'delivered']);
      // The receipt is sent once the ack is recorded.
      assert.equal(await pendingCount(b), 0);
      await eventually("alice's receipt is acked", async () => (await pendingCount(a)) === 0);
      await sleep(QUIET_MS);
      assert.deepEqual(bobDeliveries.untaken(), []);
      assert.deepEqual(aliceReceipts.untaken(), []);
    });

    it('a message to a connected user comes at once', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const aliceReceipts = receipts();
      const bobDeliveries = deliveries();
      const b = await client(protocol, { token: bob, handlers: { Deliver: bobDeliveries.handler } });
      const a = await client(protocol, { token: alice, handlers: { Receipt: aliceReceipts.handler } });
      const id = await a.invoke('SendReliable', bob, 'are you there?');
      assert.deepEqual(await bobDeliveries.next(), { id, from: alice, text: 'are you there?' });
      assert.deepEqual(await aliceReceipts.next(), [id, 'delivered']);
      assert.equal(await pendingCount(b), 0);
    });

    it('a nack (a handler that throws, then one that returns nothing) brings the message again after a growing backoff, and the next message waits for the ack', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const aliceReceipts = receipts();
      const a = await client(protocol, { token: alice, handlers: { Receipt: aliceReceipts.handler } });
      const first = await a.invoke('SendReliable', bob, 'first');
      const second = await a.invoke('SendReliable', bob, 'second');

      const bobDeliveries = deliveries((message, attempt) => {
        if (message.id === first && attempt === 1) throw new Error('not now');
        if (message.id === first && attempt === 2) return undefined;
        return true;
      });
      const b = await client(protocol, { token: bob, handlers: { Deliver: bobDeliveries.handler } });
      const seen = [];
      for (let i = 0; i < 4; i += 1) seen.push((await bobDeliveries.next()).text);
      assert.deepEqual(seen, ['first', 'first', 'first', 'second']);

      // Backoffs of 500 ms then 1 s, each ± 20 %; far below the 5 s ack timeout, so a nack is not taken for silence.
      const [t0, t1, t2] = bobDeliveries.times();
      assert.ok(t1 - t0 >= 380 && t1 - t0 < 2_000, `first backoff ${t1 - t0} ms`);
      assert.ok(t2 - t1 >= 780 && t2 - t1 < 3_000, `second backoff ${t2 - t1} ms`);

      const settled = [await aliceReceipts.next(), await aliceReceipts.next()];
      assert.deepEqual(new Map(settled), new Map([[first, 'delivered'], [second, 'delivered']]));
      assert.equal(await pendingCount(b), 0);
      await sleep(QUIET_MS);
      assert.deepEqual(bobDeliveries.untaken(), []);
    });

    it('a client without a Deliver handler nacks: the message comes again until a handler returns', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const aliceReceipts = receipts();
      const a = await client(protocol, { token: alice, handlers: { Receipt: aliceReceipts.handler } });
      const id = await a.invoke('SendReliable', bob, 'anyone?');

      const b = await client(protocol, { token: bob });
      // Attempts 1 and 2 (after 500 ms) are answered "Client didn't provide a result."
      await sleep(1_000);
      assert.equal(await pendingCount(b), 1);
      assert.deepEqual(aliceReceipts.all(), []);

      const bobDeliveries = deliveries();
      b.on('Deliver', bobDeliveries.handler);
      assert.deepEqual(await bobDeliveries.next(), { id, from: alice, text: 'anyone?' });
      assert.deepEqual(await aliceReceipts.next(), [id, 'delivered']);
      assert.equal(await pendingCount(b), 0);
    });

    it('20 messages to an offline user come in order, each once', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const aliceReceipts = receipts();
      const a = await client(protocol, { token: alice, handlers: { Receipt: aliceReceipts.handler } });
      const ids = [];
      for (let i = 0; i < 20; i += 1) ids.push(await a.invoke('SendReliable', bob, `message ${i}`));
      assert.equal(new Set(ids).size, 20);

      const bobDeliveries = deliveries();
      const b = await client(protocol, { token: bob, handlers: { Deliver: bobDeliveries.handler } });
      const got = [];
      for (let i = 0; i < 20; i += 1) got.push(await bobDeliveries.next());
      assert.deepEqual(
        got,
        ids.map((id, i) => ({ id, from: alice, text: `message ${i}` })),
      );
      const settled = [];
      for (let i = 0; i < 20; i += 1) settled.push(await aliceReceipts.next());
      assert.deepEqual(new Map(settled), new Map(ids.map((id) => [id, 'delivered'])));
      assert.equal(await pendingCount(b), 0);
      await sleep(QUIET_MS);
      assert.deepEqual(bobDeliveries.untaken(), []);
      assert.deepEqual(aliceReceipts.untaken(), []);
    });

    it('SendReliableTtl: unacked at its ttl, the message expires with an expired receipt, and its user never gets it', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const aliceReceipts = receipts();
      const a = await client(protocol, { token: alice, handlers: { Receipt: aliceReceipts.handler } });
      const sent = performance.now();
      const id = await a.invoke('SendReliableTtl', bob, 'soon gone', 800);
      assert.deepEqual(await aliceReceipts.next(), [id, 'expired']);
      const expiredAfter = performance.now() - sent;
      assert.ok(expiredAfter >= 750, `expired after ${expiredAfter} ms`);

      const bobDeliveries = deliveries();
      const b = await client(protocol, { token: bob, handlers: { Deliver: bobDeliveries.handler } });
      assert.equal(await pendingCount(b), 0);
      await sleep(QUIET_MS);
      assert.deepEqual(bobDeliveries.all(), []);
    });

    it('a message that expires while nacked no longer holds back the next one', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const aliceReceipts = receipts();
      const a = await client(protocol, { token: alice, handlers: { Receipt: aliceReceipts.handler } });
      const doomed = await a.invoke('SendReliableTtl', bob, 'doomed', 800);
      const next = await a.invoke('SendReliable', bob, 'next');

      const bobDeliveries = deliveries((message) => {
        if (message.id === doomed) throw new Error('never');
        return true;
      });
      const b = await client(protocol, { token: bob, handlers: { Deliver: bobDeliveries.handler } });
      let message;
      do message = await bobDeliveries.next();
      while (message.id === doomed);
      assert.deepEqual(message, { id: next, from: alice, text: 'next' });
      const settled = [await aliceReceipts.next(), await aliceReceipts.next()];
      assert.deepEqual(new Map(settled), new Map([[doomed, 'expired'], [next, 'delivered']]));
      assert.equal(await pendingCount(b), 0);
    });

    it('an anonymous sender: SendReliable works, the message has from null, and no receipt comes', async () => {
      const bob = user('bob');
      const anonymousReceipts = receipts();
      const anonymous = await client(protocol, { handlers: { Receipt: anonymousReceipts.handler } });
      const id = await anonymous.invoke('SendReliable', bob, 'guess who');

      const bobDeliveries = deliveries();
      const b = await client(protocol, { token: bob, handlers: { Deliver: bobDeliveries.handler } });
      assert.deepEqual(await bobDeliveries.next(), { id, from: null, text: 'guess who' });
      await eventually("bob's ack is recorded", async () => (await pendingCount(b)) === 0);
      await sleep(QUIET_MS);
      assert.deepEqual(anonymousReceipts.all(), []);
      assert.deepEqual(bobDeliveries.untaken(), []);
      assert.equal(await pendingCount(anonymous), 0);
    });

    it('two connections of one user, both with a handler: the message comes to one of them, once', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const aliceReceipts = receipts();
      const bobDeliveries = deliveries();
      const b1 = await client(protocol, { token: bob, handlers: { Deliver: bobDeliveries.handler } });
      await client(protocol, { token: bob, handlers: { Deliver: bobDeliveries.handler } });
      const a = await client(protocol, { token: alice, handlers: { Receipt: aliceReceipts.handler } });
      const id = await a.invoke('SendReliable', bob, 'for either of you');
      assert.deepEqual(await bobDeliveries.next(), { id, from: alice, text: 'for either of you' });
      assert.deepEqual(await aliceReceipts.next(), [id, 'delivered']);
      assert.equal(await pendingCount(b1), 0);
      await sleep(QUIET_MS);
      assert.deepEqual(bobDeliveries.untaken(), []);
    });

    it('two connections of one user, one without a handler: after its nack the server tries the other, which gets the message', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const aliceReceipts = receipts();
      const a = await client(protocol, { token: alice, handlers: { Receipt: aliceReceipts.handler } });
      const silent = await client(protocol, { token: bob });
      const id = await a.invoke('SendReliable', bob, 'who answers?');
      // The first attempt goes to the only connection, which answers "Client didn't provide a result."
      await sleep(200);
      const bobDeliveries = deliveries();
      await client(protocol, { token: bob, handlers: { Deliver: bobDeliveries.handler } });
      assert.deepEqual(await bobDeliveries.next(), { id, from: alice, text: 'who answers?' });
      assert.deepEqual(await aliceReceipts.next(), [id, 'delivered']);
      assert.equal(await pendingCount(silent), 0);
      await sleep(QUIET_MS);
      assert.deepEqual(bobDeliveries.untaken(), []);
    });

    it('a connection that goes away before its ack: the message comes again on the other connection, without waiting for the ack timeout', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const aliceReceipts = receipts();
      const a = await client(protocol, { token: alice, handlers: { Receipt: aliceReceipts.handler } });
      const never = gate();
      const leavingDeliveries = deliveries(() => never.opened);
      const leaving = await connect(server.hubUrl, protocol, {
        token: bob,
        handlers: { Deliver: leavingDeliveries.handler },
      });
      const id = await a.invoke('SendReliable', bob, 'catch me');
      assert.deepEqual(await leavingDeliveries.next(), { id, from: alice, text: 'catch me' });

      const stayingDeliveries = deliveries();
      await client(protocol, { token: bob, handlers: { Deliver: stayingDeliveries.handler } });
      await leaving.stop();
      never.open();
      assert.deepEqual(await stayingDeliveries.next(4_000), { id, from: alice, text: 'catch me' });
      assert.deepEqual(await aliceReceipts.next(), [id, 'delivered']);
    });
  });
}

it('on the wire: Deliver is a client-result invocation with courier-* headers, and a nack brings attempt 2 of the same message', async () => {
  const [alice, bob] = [user('alice'), user('bob')];
  const aliceReceipts = receipts();
  const a = await client(json, { token: alice, handlers: { Receipt: aliceReceipts.handler } });
  const id = await a.invoke('SendReliable', bob, 'seen raw');
  const raw = await jsonHubSocket(server.hubUrl, { query: `?access_token=${bob}` });
  try {
    const first = await nextMessage(raw);
    assert.equal(first.type, 1);
    assert.equal(first.target, 'Deliver');
    assert.equal(typeof first.invocationId, 'string');
    assert.deepEqual(first.arguments, [{ id, from: alice, text: 'seen raw' }]);
    assert.equal(first.headers['courier-id'], id);
    assert.equal(first.headers['courier-attempt'], '1');
    raw.send(`${JSON.stringify({ type: 3, invocationId: first.invocationId, error: 'not yet' })}${RS}`);

    const second = await nextMessage(raw);
    assert.equal(second.target, 'Deliver');
    assert.notEqual(second.invocationId, first.invocationId);
    assert.deepEqual(second.arguments, first.arguments);
    assert.equal(second.headers['courier-id'], id);
    assert.equal(second.headers['courier-seq'], first.headers['courier-seq']);
    assert.equal(second.headers['courier-attempt'], '2');
    raw.send(`${JSON.stringify({ type: 3, invocationId: second.invocationId, result: 'ok' })}${RS}`);
    assert.deepEqual(await aliceReceipts.next(), [id, 'delivered']);
  } finally {
    raw.socket.close();
  }
});

/**
 * Runs `test(start)` with a fresh store file; `start()` starts a server on it (a new port each time). Every server
 * started is stopped and the store removed afterwards.
 */
async function withStore(test) {
  const dir = await mkdtemp(join(tmpdir(), 'courier-interop-'));
  const servers = [];
  try {
    await test(async () => {
      const started = await startServer(['--addr', '127.0.0.1:0', '--store', join(dir, 's.redb')]);
      servers.push(started);
      return started;
    });
  } finally {
    await Promise.all(servers.map((started) => started.stop('SIGKILL')));
    await rm(dir, { recursive: true, force: true });
  }
}

/** Stops `stopped` with `signal`; a SIGTERM must end in exit code 0. */
async function stopWith(stopped, signal) {
  const code = await stopped.stop(signal);
  if (signal === 'SIGTERM') assert.equal(code, 0, stopped.stderr());
}

// Sender and receiver in different protocols: the mailbox keeps a message in one form for either.
for (const [signal, senderProtocol, receiverProtocol] of [
  ['SIGTERM', json, messagepack],
  ['SIGKILL', messagepack, json],
]) {
  it(`--store: a mailbox survives ${signal} right after SendReliable; after the restart bob gets the message and alice the receipt, and acks survive the next ${signal}`, async () => {
    await withStore(async (start) => {
      const first = await start();
      const a = await connect(first.hubUrl, senderProtocol, { token: 'alice' });
      const id = await a.invoke('SendReliable', 'bob', 'kept on disk');
      await stopWith(first, signal);
      await a.stop();

      const second = await start();
      const bobDeliveries = deliveries();
      const b = await client(receiverProtocol, { token: 'bob', handlers: { Deliver: bobDeliveries.handler } }, second.hubUrl);
      assert.deepEqual(await bobDeliveries.next(), { id, from: 'alice', text: 'kept on disk' });
      const aliceReceipts = receipts();
      const a2 = await client(senderProtocol, { token: 'alice', handlers: { Receipt: aliceReceipts.handler } }, second.hubUrl);
      assert.deepEqual(await aliceReceipts.next(), [id, 'delivered']);
      assert.equal(await pendingCount(b), 0);
      await eventually("alice's receipt is acked", async () => (await pendingCount(a2)) === 0);
      await stopWith(second, signal);
      await Promise.all(open.splice(0).map((connection) => connection.stop()));

      // Nothing comes twice after the next restart.
      const third = await start();
      const bobAgain = deliveries();
      const aliceAgain = receipts();
      const b3 = await client(receiverProtocol, { token: 'bob', handlers: { Deliver: bobAgain.handler } }, third.hubUrl);
      const a3 = await client(senderProtocol, { token: 'alice', handlers: { Receipt: aliceAgain.handler } }, third.hubUrl);
      assert.equal(await pendingCount(b3), 0);
      assert.equal(await pendingCount(a3), 0);
      await sleep(QUIET_MS);
      assert.deepEqual(bobAgain.all(), []);
      assert.deepEqual(aliceAgain.all(), []);
    });
  });
}
