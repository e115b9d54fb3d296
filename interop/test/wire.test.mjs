// What the official clients do not show: negotiate versions and stream cancellation, seen on the wire.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';

import { signalR } from '../lib/client.mjs';
import { RS, jsonHubSocket, nextMessage } from '../lib/raw.mjs';
import { startServer } from '../lib/server.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  assert.equal(await server.stop(), 0, server.stderr());
});

async function negotiate(query) {
  const response = await fetch(`${server.hubUrl}/negotiate${query}`, { method: 'POST' });
  assert.equal(response.status, 200);
  return response.json();
}

/** Invokes Add on a hub socket and checks the answer. */
async function add(hub) {
  hub.send(JSON.stringify({ type: 1, invocationId: 'add', target: 'Add', arguments: [2, 3] }) + RS);
  const completion = await nextMessage(hub);
  assert.deepEqual({ ...completion }, { type: 3, invocationId: 'add', result: 5 });
}

it('negotiate version 0 connects with the connection id, version 1 with the token', async () => {
  const v0 = await negotiate('');
  assert.equal(v0.negotiateVersion, 0);
  assert.equal(v0.connectionToken, undefined);
  assert.deepEqual(v0.availableTransports.map((t) => t.transport), ['WebSockets']);
  const first = await jsonHubSocket(server.hubUrl, { query: `?id=${v0.connectionId}` });
  await add(first);

  const v1 = await negotiate('?negotiateVersion=1');
  assert.equal(v1.negotiateVersion, 1);
  assert.notEqual(v1.connectionToken, v1.connectionId);
  assert.equal(v1.useStatefulReconnect, undefined);
  const second = await jsonHubSocket(server.hubUrl, { query: `?id=${v1.connectionToken}` });
  await add(second);

  for (const hub of [first, second]) {
    hub.socket.close();
    await hub.closed;
  }
});

it('a cancelled Counter stream ends with a Completion and sends nothing more', async () => {
  const hub = await jsonHubSocket(server.hubUrl);
  hub.send(JSON.stringify({ type: 4, invocationId: 'c', target: 'Counter', arguments: [1_000, 10] }) + RS);
  for (const expected of [0, 1, 2]) {
    assert.deepEqual({ ...(await nextMessage(hub)) }, { type: 2, invocationId: 'c', item: expected });
  }
  hub.send(JSON.stringify({ type: 5, invocationId: 'c' }) + RS);
  // Items already on their way may arrive first; then the Completion, then nothing of this stream.
  let message = await nextMessage(hub);
  while (message.type === signalR.MessageType.StreamItem) message = await nextMessage(hub);
  assert.deepEqual({ ...message }, { type: 3, invocationId: 'c' });
  await add(hub);
  hub.socket.close();
  await hub.closed;
});
