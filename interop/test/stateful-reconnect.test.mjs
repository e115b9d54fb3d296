// Stateful reconnect with the official JS client: the WebSocket is killed mid-stream (by destroying the sockets
// of a TCP proxy in between) and the client re-attaches to the same connection.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { connect, protocols, receiver } from '../lib/client.mjs';
import { startProxy } from '../lib/proxy.mjs';
import { startServer } from '../lib/server.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  assert.equal(await server.stop(), 0, server.stderr());
});

for (const protocol of protocols) {
  describe(`stateful reconnect over ${protocol.name}`, () => {
    let proxy;
    before(async () => {
      proxy = await startProxy(server);
    });
    after(async () => {
      await proxy.close();
    });

    it('a Counter stream survives a broken WebSocket: nothing lost, nothing twice, same connection', async () => {
      const inbox = receiver();
      const connection = await connect(`${proxy.url}/hub`, protocol, {
        token: 'reconnecting',
        statefulReconnect: true,
        handlers: { Receive: inbox.handler },
      });
      let closed = false;
      connection.onclose(() => {
        closed = true;
      });
      try {
        const idBefore = await connection.invoke('GetConnectionId');
        const tokenBefore = connection.connectionId;
        const acceptedBefore = proxy.accepted();
        const count = 60;
        const items = [];
        let broken = false;
        const done = new Promise((resolve, reject) => {
          connection.stream('Counter', count, 15).subscribe({
            next: (item) => {
              items.push(item);
              if (items.length === 10 && !broken) {
                broken = true;
                proxy.breakAll();
              }
            },
            complete: resolve,
            error: reject,
          });
        });
        await done;
        assert.ok(broken, 'the sockets were broken mid-stream');
        assert.equal(proxy.accepted(), acceptedBefore + 1, 'one new WebSocket re-attached');
        assert.deepEqual(items, Array.from({ length: count }, (_, i) => i));
        assert.equal(closed, false, 'the connection did not close');
        assert.equal(connection.connectionId, tokenBefore);
        assert.equal(await connection.invoke('GetConnectionId'), idBefore);

        // Messages sent while the WebSocket is down arrive once it is back, in order, once each.
        proxy.breakAll();
        await connection.invoke('SendToUser', 'reconnecting', 'after the break');
        assert.deepEqual(await inbox.next(), ['reconnecting', 'after the break']);
        await sleep(100);
        assert.deepEqual(inbox.pending(), []);
      } finally {
        await connection.stop();
      }
    });
  });
}
