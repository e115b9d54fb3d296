// Reliable delivery through the official JS client (CONFORMANCE.md, "Reliable delivery in the conformance
// server"): SendReliable into a user's mailbox, Deliver as a client result whose returned value is the ack,
// receipts, redelivery after nacks, order, expiry, several connections of one user, a broken WebSocket, and
// mailboxes on --store that survive a restart.
//
// The suites below run concurrently (most of their time is spent waiting for backoffs and ttls); every test has
// users of its own, since mailboxes outlive connections.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { connect, protocols } from '../lib/client.mjs';
import { startProxy } from '../lib/proxy.mjs';
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

/** A started connection (see `connect`) to `hubUrl`, stopped when test `t` ends. */
async function client(t, protocol, options, hubUrl = server.hubUrl) {
  const connection = await connect(hubUrl, protocol, options);
  t.after(() => connection.stop());
  return connection;
}

let users = 0;
/** A user id no other test uses. */
function user(name) {
  users += 1;
  return `${name}-${users}`;
}

const pendingCount = (connection) => connection.invoke('PendingCount');

/** A sender connected as a fresh user with a `Receipt` recorder: `{ name, connection, receipts }`. */
async function sender(t, protocol, hubUrl = server.hubUrl) {
  const name = user('alice');
  const recorded = receipts();
  const connection = await client(t, protocol, { token: name, handlers: { Receipt: recorded.handler } }, hubUrl);
  return { name, connection, receipts: recorded };
}

/** A connection as `name` with a `Deliver` recorder answering with `answer`: `{ connection, deliveries }`. */
async function receiver(t, protocol, name, answer, hubUrl = server.hubUrl) {
  const recorded = deliveries(answer);
  const connection = await client(t, protocol, { token: name, handlers: { Deliver: recorded.handler } }, hubUrl);
  return { connection, deliveries: recorded };
}

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

/** Stops `running` with `signal`; a SIGTERM must end with exit code 0. */
async function stopWith(running, signal) {
  const code = await running.stop(signal);
  if (signal === 'SIGTERM') assert.equal(code, 0, running.stderr());
}

describe('reliable delivery', { concurrency: true }, () => {
  for (const protocol of protocols) {
    // One test at a time within a protocol, so that fewer things run at once where backoff timings are asserted.
    describe(`over ${protocol.name}`, { concurrency: false }, () => {
      it('a message to an offline user comes once when they connect; PendingCount is 1 until the ack; the sender gets a delivered receipt', async (t) => {
        const alice = await sender(t, protocol);
        const bob = user('bob');
        const text = 'hello bob: ✓ 漢字 🚀, a record separator \u001e and a NUL \u0000';
        const id = await alice.connection.invoke('SendReliable', bob, text);
        assert.equal(typeof id, 'string');
        assert.notEqual(id, '');

        const ack = gate();
        const b = await receiver(t, protocol, bob, () => ack.opened.then(() => 'thanks'));
        assert.deepEqual(await b.deliveries.next(), { id, from: alice.name, text });
        // The handler has not returned yet: the message still awaits its ack.
        assert.equal(await pendingCount(b.connection), 1);
        assert.deepEqual(alice.receipts.all(), []);

        ack.open();
        assert.deepEqual(await alice.receipts.next(), [id, 'delivered']);
        // The receipt is sent once the ack is recorded.
        assert.equal(await pendingCount(b.connection), 0);
        await eventually("alice's receipt is acked", async () => (await pendingCount(alice.connection)) === 0);
        await sleep(QUIET_MS);
        assert.deepEqual(b.deliveries.untaken(), []);
        assert.deepEqual(alice.receipts.untaken(), []);
      });

      it('a message to a connected user comes at once; any value the handler returns acks it, even null, false, 0 or ""', async (t) => {
        const alice = await sender(t, protocol);
        const bob = user('bob');
        const answers = [null, false, 0, '', 'ok'];
        const b = await receiver(t, protocol, bob, (message) => answers[Number(message.text)]);
        for (const [i] of answers.entries()) {
          const id = await alice.connection.invoke('SendReliable', bob, String(i));
          assert.deepEqual(await b.deliveries.next(), { id, from: alice.name, text: String(i) });
          assert.deepEqual(await alice.receipts.next(), [id, 'delivered']);
        }
        assert.equal(await pendingCount(b.connection), 0);
        assert.deepEqual(b.deliveries.untaken(), []);
      });

      it('a nack (a handler that throws, then one that returns nothing) brings the message again after a growing backoff, and the next message waits for the ack', async (t) => {
        const alice = await sender(t, protocol);
        const bob = user('bob');
        const first = await alice.connection.invoke('SendReliable', bob, 'first');
        const second = await alice.connection.invoke('SendReliable', bob, 'second');

        const b = await receiver(t, protocol, bob, (message, attempt) => {
          if (message.id === first && attempt === 1) throw new Error('not now');
          if (message.id === first && attempt === 2) return undefined;
          return true;
        });
        const seen = [];
        for (let i = 0; i < 4; i += 1) seen.push((await b.deliveries.next()).text);
        assert.deepEqual(seen, ['first', 'first', 'first', 'second']);

        // Backoffs of 500 ms then 1 s, each ± 20 %; far below the 5 s ack timeout, so a nack is not taken for silence.
        const [t0, t1, t2] = b.deliveries.times();
        assert.ok(t1 - t0 >= 380 && t1 - t0 < 2_000, `first backoff ${t1 - t0} ms`);
        assert.ok(t2 - t1 >= 780 && t2 - t1 < 3_000, `second backoff ${t2 - t1} ms`);

        const settled = [await alice.receipts.next(), await alice.receipts.next()];
        assert.deepEqual(new Map(settled), new Map([[first, 'delivered'], [second, 'delivered']]));
        assert.equal(await pendingCount(b.connection), 0);
        await sleep(QUIET_MS);
        assert.deepEqual(b.deliveries.untaken(), []);
      });

      it('a client without a Deliver handler nacks: the message comes again until a handler returns', async (t) => {
        const alice = await sender(t, protocol);
        const bob = user('bob');
        const id = await alice.connection.invoke('SendReliable', bob, 'anyone?');

        const b = await client(t, protocol, { token: bob });
        // Attempts 1 and 2 (after 500 ms) are answered "Client didn't provide a result."
        await sleep(1_000);
        assert.equal(await pendingCount(b), 1);
        assert.deepEqual(alice.receipts.all(), []);

        const bobDeliveries = deliveries();
        b.on('Deliver', bobDeliveries.handler);
        assert.deepEqual(await bobDeliveries.next(), { id, from: alice.name, text: 'anyone?' });
        assert.deepEqual(await alice.receipts.next(), [id, 'delivered']);
        assert.equal(await pendingCount(b), 0);
      });

      it('20 messages to an offline user come in order, each once', async (t) => {
        const alice = await sender(t, protocol);
        const bob = user('bob');
        const ids = [];
        for (let i = 0; i < 20; i += 1) ids.push(await alice.connection.invoke('SendReliable', bob, `message ${i}`));
        assert.equal(new Set(ids).size, 20);

        const b = await receiver(t, protocol, bob);
        const got = [];
        for (let i = 0; i < 20; i += 1) got.push(await b.deliveries.next());
        assert.deepEqual(
          got,
          ids.map((id, i) => ({ id, from: alice.name, text: `message ${i}` })),
        );
        const settled = [];
        for (let i = 0; i < 20; i += 1) settled.push(await alice.receipts.next());
        assert.deepEqual(new Map(settled), new Map(ids.map((id) => [id, 'delivered'])));
        assert.equal(await pendingCount(b.connection), 0);
        await sleep(QUIET_MS);
        assert.deepEqual(b.deliveries.untaken(), []);
        assert.deepEqual(alice.receipts.untaken(), []);
      });

      it('SendReliableTtl: unacked at its ttl, the message expires with one expired receipt, and its user never gets it', async (t) => {
        const alice = await sender(t, protocol);
        const bob = user('bob');
        const sent = performance.now();
        const id = await alice.connection.invoke('SendReliableTtl', bob, 'soon gone', 800);
        assert.deepEqual(await alice.receipts.next(), [id, 'expired']);
        const expiredAfter = performance.now() - sent;
        assert.ok(expiredAfter >= 750, `expired after ${expiredAfter} ms`);

        const b = await receiver(t, protocol, bob);
        assert.equal(await pendingCount(b.connection), 0);
        await sleep(QUIET_MS);
        assert.deepEqual(b.deliveries.all(), []);
        assert.deepEqual(alice.receipts.untaken(), []);
      });

      it('a message that expires while nacked no longer holds back the next one', async (t) => {
        const alice = await sender(t, protocol);
        const bob = user('bob');
        const doomed = await alice.connection.invoke('SendReliableTtl', bob, 'doomed', 800);
        const next = await alice.connection.invoke('SendReliable', bob, 'next');

        const b = await receiver(t, protocol, bob, (message) => {
          if (message.id === doomed) throw new Error('never');
          return true;
        });
        let message;
        do message = await b.deliveries.next();
        while (message.id === doomed);
        assert.deepEqual(message, { id: next, from: alice.name, text: 'next' });
        const settled = [await alice.receipts.next(), await alice.receipts.next()];
        assert.deepEqual(new Map(settled), new Map([[doomed, 'expired'], [next, 'delivered']]));
        assert.equal(await pendingCount(b.connection), 0);
      });

      it('an anonymous sender: SendReliable works, the message has from null, and no receipt comes', async (t) => {
        const bob = user('bob');
        const anonymousReceipts = receipts();
        const anonymous = await client(t, protocol, { handlers: { Receipt: anonymousReceipts.handler } });
        const id = await anonymous.invoke('SendReliable', bob, 'guess who');

        const b = await receiver(t, protocol, bob);
        assert.deepEqual(await b.deliveries.next(), { id, from: null, text: 'guess who' });
        await eventually("bob's ack is recorded", async () => (await pendingCount(b.connection)) === 0);
        await sleep(QUIET_MS);
        assert.deepEqual(anonymousReceipts.all(), []);
        assert.deepEqual(b.deliveries.untaken(), []);
        assert.equal(await pendingCount(anonymous), 0);
      });

      it('two connections of one user, both with a handler: the message comes to one of them, once', async (t) => {
        const alice = await sender(t, protocol);
        const bob = user('bob');
        const both = deliveries();
        const b1 = await client(t, protocol, { token: bob, handlers: { Deliver: both.handler } });
        await client(t, protocol, { token: bob, handlers: { Deliver: both.handler } });
        const id = await alice.connection.invoke('SendReliable', bob, 'for either of you');
        assert.deepEqual(await both.next(), { id, from: alice.name, text: 'for either of you' });
        assert.deepEqual(await alice.receipts.next(), [id, 'delivered']);
        assert.equal(await pendingCount(b1), 0);
        await sleep(QUIET_MS);
        assert.deepEqual(both.untaken(), []);
      });

      it('two connections of one user, one without a handler: after its nack the server tries the other, which gets the message', async (t) => {
        const alice = await sender(t, protocol);
        const bob = user('bob');
        const silent = await client(t, protocol, { token: bob });
        const id = await alice.connection.invoke('SendReliable', bob, 'who answers?');
        // The first attempt goes to the only connection, which answers "Client didn't provide a result."
        await sleep(200);
        const b = await receiver(t, protocol, bob);
        assert.deepEqual(await b.deliveries.next(), { id, from: alice.name, text: 'who answers?' });
        assert.deepEqual(await alice.receipts.next(), [id, 'delivered']);
        assert.equal(await pendingCount(silent), 0);
        await sleep(QUIET_MS);
        assert.deepEqual(b.deliveries.untaken(), []);
      });

      it('a connection that goes away before its ack: the message comes again on the other connection, without waiting for the ack timeout', async (t) => {
        const alice = await sender(t, protocol);
        const bob = user('bob');
        const never = gate();
        t.after(never.open);
        const leaving = await receiver(t, protocol, bob, () => never.opened);
        const id = await alice.connection.invoke('SendReliable', bob, 'catch me');
        assert.deepEqual(await leaving.deliveries.next(), { id, from: alice.name, text: 'catch me' });

        const staying = await receiver(t, protocol, bob);
        await leaving.connection.stop();
        assert.deepEqual(await staying.deliveries.next(4_000), { id, from: alice.name, text: 'catch me' });
        assert.deepEqual(await alice.receipts.next(), [id, 'delivered']);
      });

      it('stateful reconnect: a Deliver acked while the WebSocket is broken, and one sent while it is broken, arrive once each', async (t) => {
        const proxy = await startProxy(server);
        t.after(() => proxy.close());
        const alice = await sender(t, protocol);
        const bob = user('bob');
        const hold = gate();
        const bobDeliveries = deliveries(() => hold.opened.then(() => 'ok'));
        const options = { token: bob, statefulReconnect: true, handlers: { Deliver: bobDeliveries.handler } };
        await client(t, protocol, options, `${proxy.url}/hub`);
        const acceptedBefore = proxy.accepted();

        const held = await alice.connection.invoke('SendReliable', bob, 'held');
        assert.equal((await bobDeliveries.next()).id, held);
        proxy.breakAll();
        hold.open();
        assert.deepEqual(await alice.receipts.next(4_000), [held, 'delivered']);

        proxy.breakAll();
        const lost = await alice.connection.invoke('SendReliable', bob, 'sent while broken');
        assert.equal((await bobDeliveries.next(4_000)).id, lost);
        assert.deepEqual(await alice.receipts.next(4_000), [lost, 'delivered']);
        await sleep(QUIET_MS);
        assert.deepEqual(bobDeliveries.untaken(), []);
        assert.equal(proxy.accepted(), acceptedBefore + 2, 'the client re-attached twice');
      });
    });
  }

  it('on the wire: Deliver is a client-result invocation with courier-* headers, and a nack brings attempt 2 of the same message', async (t) => {
    const alice = await sender(t, json);
    const bob = user('bob');
    const id = await alice.connection.invoke('SendReliable', bob, 'seen raw');
    const raw = await jsonHubSocket(server.hubUrl, { query: `?access_token=${bob}` });
    t.after(() => raw.socket.close());

    const first = await nextMessage(raw);
    assert.equal(first.type, 1);
    assert.equal(first.target, 'Deliver');
    assert.equal(typeof first.invocationId, 'string');
    assert.deepEqual(first.arguments, [{ id, from: alice.name, text: 'seen raw' }]);
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
    assert.deepEqual(await alice.receipts.next(), [id, 'delivered']);
  });

  it('a handler that never answers: after the 5 s ack timeout the message comes again', async (t) => {
    const alice = await sender(t, json);
    const bob = user('bob');
    const never = gate();
    t.after(never.open);
    const b = await receiver(t, json, bob, (_message, attempt) => (attempt === 1 ? never.opened : true));
    const id = await alice.connection.invoke('SendReliable', bob, 'hello?');
    assert.equal((await b.deliveries.next()).id, id);
    assert.equal((await b.deliveries.next(8_000)).id, id);
    const [t0, t1] = b.deliveries.times();
    assert.ok(t1 - t0 >= 5_000, `came again after ${t1 - t0} ms`);
    assert.deepEqual(await alice.receipts.next(), [id, 'delivered']);
  });

  it('a message whose ttl passes while its handler still runs: one expired receipt, the next message comes, and the late ack changes nothing', async (t) => {
    const alice = await sender(t, json);
    const bob = user('bob');
    const hold = gate();
    t.after(hold.open);
    const b = await receiver(t, json, bob, (message) =>
      message.text === 'slow' ? hold.opened.then(() => 'late') : 'ok',
    );
    const slow = await alice.connection.invoke('SendReliableTtl', bob, 'slow', 800);
    const next = await alice.connection.invoke('SendReliable', bob, 'next');
    assert.equal((await b.deliveries.next()).id, slow);
    assert.deepEqual(await b.deliveries.next(), { id: next, from: alice.name, text: 'next' });
    const settled = [await alice.receipts.next(), await alice.receipts.next()];
    assert.deepEqual(new Map(settled), new Map([[slow, 'expired'], [next, 'delivered']]));

    hold.open();
    await sleep(QUIET_MS);
    assert.deepEqual(alice.receipts.untaken(), []);
    assert.deepEqual(b.deliveries.untaken(), []);
    assert.equal(await pendingCount(b.connection), 0);
  });

  /** 5 senders send 10 messages each, all at once, to one user: each message comes once, each sender's in order. */
  async function concurrentSenders(t, hubUrl) {
    const bob = user('bob');
    const senders = await Promise.all([0, 1, 2, 3, 4].map(() => sender(t, json, hubUrl)));
    const sent = await Promise.all(
      senders.map(async ({ connection }) => {
        const ids = [];
        for (let i = 0; i < 10; i += 1) ids.push(await connection.invoke('SendReliable', bob, `message ${i}`));
        return ids;
      }),
    );
    const b = await receiver(t, messagepack, bob, undefined, hubUrl);
    const got = [];
    for (let i = 0; i < 50; i += 1) got.push(await b.deliveries.next());
    assert.equal(new Set(got.map((message) => message.id)).size, 50);
    for (const [i, { name }] of senders.entries()) {
      assert.deepEqual(got.filter((message) => message.from === name).map((message) => message.id), sent[i]);
    }
    for (const [i, { receipts: recorded }] of senders.entries()) {
      const settled = [];
      for (let k = 0; k < 10; k += 1) settled.push(await recorded.next());
      assert.deepEqual(new Map(settled), new Map(sent[i].map((id) => [id, 'delivered'])));
    }
    assert.equal(await pendingCount(b.connection), 0);
  }

  it("5 senders × 10 messages at once to one user: each message comes once, each sender's in its order", async (t) => {
    await concurrentSenders(t, server.hubUrl);
  });

  describe('on --store', { concurrency: true }, () => {
    it("5 senders × 10 messages at once to one user: each message comes once, each sender's in its order", async (t) => {
      await withStore(async (start) => concurrentSenders(t, (await start()).hubUrl));
    });

    // Sender and receiver in different protocols: the mailbox keeps a message in one form for either.
    for (const [signal, senderProtocol, receiverProtocol] of [
      ['SIGTERM', json, messagepack],
      ['SIGKILL', messagepack, json],
    ]) {
      it(`a mailbox survives ${signal} right after SendReliable: after the restart bob gets the message and alice the receipt, and the acks survive the next ${signal}`, async (t) => {
        await withStore(async (start) => {
          const first = await start();
          const a = await connect(first.hubUrl, senderProtocol, { token: 'alice' });
          const id = await a.invoke('SendReliable', 'bob', 'kept on disk');
          await stopWith(first, signal);
          await a.stop();

          const second = await start();
          const b = await receiver(t, receiverProtocol, 'bob', undefined, second.hubUrl);
          assert.deepEqual(await b.deliveries.next(), { id, from: 'alice', text: 'kept on disk' });
          const aliceReceipts = receipts();
          const a2 = await connect(second.hubUrl, senderProtocol, {
            token: 'alice',
            handlers: { Receipt: aliceReceipts.handler },
          });
          t.after(() => a2.stop());
          assert.deepEqual(await aliceReceipts.next(), [id, 'delivered']);
          assert.equal(await pendingCount(b.connection), 0);
          // PendingCount is answered after the ack is written to the store.
          await eventually("alice's receipt is acked", async () => (await pendingCount(a2)) === 0);
          await stopWith(second, signal);

          // Nothing comes twice after the next restart.
          const third = await start();
          const bobAgain = await receiver(t, receiverProtocol, 'bob', undefined, third.hubUrl);
          const aliceAgain = receipts();
          const aliceOptions = { token: 'alice', handlers: { Receipt: aliceAgain.handler } };
          const a3 = await client(t, senderProtocol, aliceOptions, third.hubUrl);
          assert.equal(await pendingCount(bobAgain.connection), 0);
          assert.equal(await pendingCount(a3), 0);
          await sleep(QUIET_MS);
          assert.deepEqual(bobAgain.deliveries.all(), []);
          assert.deepEqual(aliceAgain.all(), []);
        });
      });

      it(`a message in flight at ${signal} comes again after the restart, before the one behind it`, async (t) => {
        await withStore(async (start) => {
          const first = await start();
          const aliceReceipts = receipts();
          const a = await connect(first.hubUrl, json, { token: 'alice', handlers: { Receipt: aliceReceipts.handler } });
          const one = await a.invoke('SendReliable', 'bob', 'one');
          const two = await a.invoke('SendReliable', 'bob', 'two');
          const never = gate();
          t.after(never.open);
          const held = deliveries(() => never.opened);
          const b = await connect(first.hubUrl, messagepack, { token: 'bob', handlers: { Deliver: held.handler } });
          assert.equal((await held.next()).id, one);
          await stopWith(first, signal);
          await Promise.all([a.stop(), b.stop()]);

          const second = await start();
          const bob = await receiver(t, messagepack, 'bob', undefined, second.hubUrl);
          await client(t, json, { token: 'alice', handlers: { Receipt: aliceReceipts.handler } }, second.hubUrl);
          assert.deepEqual(
            [await bob.deliveries.next(), await bob.deliveries.next()],
            [
              { id: one, from: 'alice', text: 'one' },
              { id: two, from: 'alice', text: 'two' },
            ],
          );
          const settled = [await aliceReceipts.next(), await aliceReceipts.next()];
          assert.deepEqual(new Map(settled), new Map([[one, 'delivered'], [two, 'delivered']]));
          await sleep(QUIET_MS);
          assert.deepEqual(bob.deliveries.untaken(), []);
          assert.deepEqual(aliceReceipts.untaken(), []);
        });
      });
    }

    it('a message whose ttl passes while the server is down: after the restart its user never gets it, and alice gets one expired receipt', async (t) => {
      await withStore(async (start) => {
        const first = await start();
        const a = await connect(first.hubUrl, json, { token: 'alice' });
        const id = await a.invoke('SendReliableTtl', 'bob', 'too late', 300);
        await stopWith(first, 'SIGTERM');
        await a.stop();
        await sleep(400);

        const second = await start();
        const b = await receiver(t, json, 'bob', undefined, second.hubUrl);
        const aliceReceipts = receipts();
        await client(t, json, { token: 'alice', handlers: { Receipt: aliceReceipts.handler } }, second.hubUrl);
        assert.deepEqual(await aliceReceipts.next(), [id, 'expired']);
        assert.equal(await pendingCount(b.connection), 0);
        await sleep(QUIET_MS);
        assert.deepEqual(b.deliveries.all(), []);
        assert.deepEqual(aliceReceipts.untaken(), []);
      });
    });

    it(
      'a message whose ttl passes while the server is down: after the restart alice alone connects and gets the expired receipt',
      async (t) => {
        await withStore(async (start) => {
          const first = await start();
          const a = await connect(first.hubUrl, json, { token: 'alice' });
          const id = await a.invoke('SendReliableTtl', 'bob', 'too late', 300);
          await stopWith(first, 'SIGTERM');
          await a.stop();
          await sleep(400);

          const second = await start();
          const aliceReceipts = receipts();
          await client(t, json, { token: 'alice', handlers: { Receipt: aliceReceipts.handler } }, second.hubUrl);
          // The sweeper runs every second.
          assert.deepEqual(await aliceReceipts.next(3_000), [id, 'expired']);
        });
      },
    );
  });
});
