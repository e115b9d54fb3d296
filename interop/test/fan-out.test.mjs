// Groups, users and broadcast with several official JS clients at once, in JSON and MessagePack.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { connect, protocols, receiver } from '../lib/client.mjs';
import { startServer } from '../lib/server.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  assert.equal(await server.stop(), 0, server.stderr());
});

/** A connected client with its queue of `Receive` calls. */
async function client(protocol, token) {
  const inbox = receiver();
  const connection = await connect(server.hubUrl, protocol, { token, handlers: { Receive: inbox.handler } });
  return { connection, inbox };
}

/**
 * A barrier: `sender` broadcasts `marker`, and each client's next `Receive` must be it. Messages are delivered
 * in order per connection, so this proves nothing else arrived before it.
 */
async function expectNothingElse(sender, clients, marker) {
  await sender.connection.invoke('Broadcast', marker);
  for (const { inbox } of clients) {
    const [, text] = await inbox.next();
    assert.equal(text, marker);
  }
}

for (const protocol of protocols) {
  describe(`fan-out over ${protocol.name}`, () => {
    let clients = [];
    after(async () => {
      await Promise.all(clients.map(({ connection }) => connection.stop()));
      clients = [];
    });

    it('SendToGroup reaches the members only; LeaveGroup takes a member out', async () => {
      const alice = await client(protocol, 'alice');
      const bob = await client(protocol, 'bob');
      const anonymous = await client(protocol);
      clients.push(alice, bob, anonymous);
      const group = `g-${protocol.name}`;
      await alice.connection.invoke('JoinGroup', group);
      await bob.connection.invoke('JoinGroup', group);

      await anonymous.connection.invoke('SendToGroup', group, 'hello group');
      assert.deepEqual(await alice.inbox.next(), [null, 'hello group']);
      assert.deepEqual(await bob.inbox.next(), [null, 'hello group']);
      await expectNothingElse(alice, [alice, bob, anonymous], 'barrier 1');

      await bob.connection.invoke('LeaveGroup', group);
      await alice.connection.invoke('SendToGroup', group, 'only alice');
      assert.deepEqual(await alice.inbox.next(), ['alice', 'only alice']);
      await expectNothingElse(alice, [alice, bob, anonymous], 'barrier 2');

      // Joining twice is one membership; a group nobody is in is fine to send to.
      await alice.connection.invoke('JoinGroup', group);
      await bob.connection.invoke('SendToGroup', group, 'once');
      assert.deepEqual(await alice.inbox.next(), ['bob', 'once']);
      await bob.connection.invoke('SendToGroup', 'empty group', 'nobody');
      await expectNothingElse(alice, [alice, bob, anonymous], 'barrier 3');
    });

    it("SendToUser reaches every connection of that user and nobody else's", async () => {
      const carolOne = await client(protocol, 'carol');
      const carolTwo = await client(protocol, 'carol');
      const dave = await client(protocol, 'dave');
      clients.push(carolOne, carolTwo, dave);

      await dave.connection.invoke('SendToUser', 'carol', 'hi carol');
      assert.deepEqual(await carolOne.inbox.next(), ['dave', 'hi carol']);
      assert.deepEqual(await carolTwo.inbox.next(), ['dave', 'hi carol']);
      await dave.connection.invoke('SendToUser', 'nobody-here', 'lost');
      await expectNothingElse(dave, [carolOne, carolTwo, dave], 'barrier');
    });

    it('Broadcast reaches every connection, the caller included', async () => {
      const erin = await client(protocol, 'erin');
      const anonymous = await client(protocol);
      clients.push(erin, anonymous);
      await anonymous.connection.invoke('Broadcast', 'to all');
      assert.deepEqual(await erin.inbox.next(), [null, 'to all']);
      assert.deepEqual(await anonymous.inbox.next(), [null, 'to all']);
    });
  });
}

it('JSON and MessagePack clients receive each other\'s messages', async () => {
  const [json, messagepack] = protocols;
  const frank = await client(json, 'frank');
  const grace = await client(messagepack, 'grace');
  try {
    await frank.connection.invoke('SendToUser', 'grace', 'from json');
    assert.deepEqual(await grace.inbox.next(), ['frank', 'from json']);
    await grace.connection.invoke('SendToUser', 'frank', 'from messagepack');
    assert.deepEqual(await frank.inbox.next(), ['grace', 'from messagepack']);
  } finally {
    await frank.connection.stop();
    await grace.connection.stop();
  }
});
