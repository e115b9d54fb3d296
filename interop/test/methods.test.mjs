// Every conformance hub method through the official JS client, in JSON and MessagePack.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { collect, connect, protocols, signalR } from '../lib/client.mjs';
import { startServer } from '../lib/server.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  assert.equal(await server.stop(), 0, server.stderr());
});

/** `promise`, or a rejection if it has not settled within `ms`. */
function withDeadline(promise, ms) {
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref();
    }),
  ]);
}

/** Values every protocol carries unchanged. */
const echoValues = [
  'hello',
  '',
  'unicode ✓ 漢字 🚀 and a record separator \u001e inside',
  'x'.repeat(10_000),
  0,
  42,
  -7,
  2 ** 53 - 1,
  1.5,
  -0.25,
  true,
  false,
  null,
  [],
  [1, 'two', [3], { four: 4 }],
  {},
  { name: 'alice', nested: { list: [true, null], n: 3.5 } },
];

for (const protocol of protocols) {
  describe(`hub methods over ${protocol.name}`, () => {
    let alice;
    let anonymous;
    before(async () => {
      alice = await connect(server.hubUrl, protocol, {
        token: 'alice',
        handlers: { Answer: (question) => `answer to ${question}` },
      });
      anonymous = await connect(server.hubUrl, protocol);
    });
    after(async () => {
      await alice.stop();
      await anonymous.stop();
    });

    it('Echo returns each kind of value unchanged', async () => {
      for (const value of echoValues) {
        assert.deepEqual(await alice.invoke('Echo', value), value);
      }
    });

    if (protocol.name === 'messagepack') {
      it('Echo returns binary data and timestamps unchanged', async () => {
        const bytes = new Uint8Array([0, 1, 2, 254, 255]);
        assert.deepEqual(await alice.invoke('Echo', bytes), bytes);
        const when = new Date(1_700_000_000_123);
        assert.deepEqual(await alice.invoke('Echo', { when, bytes }), { when, bytes });
      });
    }

    it('Add adds 64-bit integers', async () => {
      assert.equal(await alice.invoke('Add', 40, 2), 42);
      assert.equal(await alice.invoke('Add', -5, 3), -2);
      assert.equal(await alice.invoke('Add', 2 ** 52, 2 ** 52), 2 ** 53);
    });

    it("Fail completes with the hub exception's exact text", async () => {
      await assert.rejects(alice.invoke('Fail', 'the reason'), {
        message: "An unexpected error occurred invoking 'Fail' on the server. HubException: the reason",
      });
    });

    it('WhoAmI is the access token, or null without one', async () => {
      assert.equal(await alice.invoke('WhoAmI'), 'alice');
      assert.equal(await anonymous.invoke('WhoAmI'), null);
    });

    it("GetConnectionId is the client's connection id, and differs between connections", async () => {
      const id = await alice.invoke('GetConnectionId');
      assert.equal(id, alice.connectionId);
      assert.equal(await alice.invoke('GetConnectionId'), id);
      assert.notEqual(await anonymous.invoke('GetConnectionId'), id);
    });

    it('Counter streams 0..count-1', async () => {
      assert.deepEqual(await collect(alice.stream('Counter', 5, 10)), [0, 1, 2, 3, 4]);
      assert.deepEqual(await collect(alice.stream('Counter', 0, 10)), []);
    });

    it('Counter stops when the client cancels, and the connection goes on', async () => {
      const items = [];
      await new Promise((resolve, reject) => {
        const subscription = alice.stream('Counter', 1_000, 20).subscribe({
          next: (item) => {
            items.push(item);
            if (items.length === 3) {
              subscription.dispose();
              resolve();
            }
          },
          complete: () => reject(new Error('the stream completed instead of being cancelled')),
          error: reject,
        });
      });
      assert.deepEqual(items, [0, 1, 2]);
      assert.equal(await alice.invoke('Add', 1, 1), 2);
      // A second stream runs after the cancelled one.
      assert.deepEqual(await collect(alice.stream('Counter', 2, 0)), [0, 1]);
    });

    it('Sum adds an upload stream once it completes', async () => {
      const numbers = new signalR.Subject();
      const sum = alice.invoke('Sum', numbers);
      for (const n of [1, 2, 3, -4, 1_000_000_000_000]) numbers.next(n);
      numbers.complete();
      assert.equal(await sum, 1_000_000_000_002);

      const empty = new signalR.Subject();
      const zero = alice.invoke('Sum', empty);
      empty.complete();
      assert.equal(await zero, 0);
    });

    it("Ask returns the caller's answer to the Answer client result", async () => {
      assert.equal(await alice.invoke('Ask', 'what time is it?'), 'answer to what time is it?');
    });

    it("Ask completes with an error when the caller's Answer handler throws", async () => {
      const bob = await connect(server.hubUrl, protocol, {
        token: 'bob',
        handlers: {
          Answer: () => {
            throw new Error('no idea');
          },
        },
      });
      try {
        await assert.rejects(bob.invoke('Ask', 'why?'), {
          message: "An unexpected error occurred invoking 'Ask' on the server. HubException: Error: no idea",
        });
        assert.equal(await bob.invoke('Add', 2, 2), 4);
      } finally {
        await bob.stop();
      }
    });

    // Each error must arrive on its own, with no later traffic to carry it: hence the deadline (the server's next
    // write of its own would be a keep-alive Ping 15 s later).
    it("an unknown method and wrong argument counts get ASP.NET Core's error texts at once", async () => {
      const failures = [
        [['NoSuchMethod', 1], "Failed to invoke 'NoSuchMethod' due to an error on the server. HubException: Method does not exist."],
        [['Add', 1], "Failed to invoke 'Add' due to an error on the server."],
        [['Echo'], "Failed to invoke 'Echo' due to an error on the server."],
        [['WhoAmI', 'extra'], "Failed to invoke 'WhoAmI' due to an error on the server."],
      ];
      for (const [[method, ...args], message] of failures) {
        await assert.rejects(withDeadline(alice.invoke(method, ...args), 5_000), { message });
      }
      assert.equal(await alice.invoke('Add', 1, 2), 3);
    });

    it('a token that is not a user id is refused with 401', async () => {
      await assert.rejects(connect(server.hubUrl, protocol, { token: 'not a user!' }), /401/);
      await assert.rejects(connect(server.hubUrl, protocol, { token: 'u'.repeat(65) }), /401/);
    });
  });
}
