// Bad input against the conformance server, from a raw WebSocket or plain HTTP, while an official client
// connected at the same time keeps working.
import assert from 'node:assert/strict';
import { after, before, beforeEach, it } from 'node:test';

import { connect, protocols } from '../lib/client.mjs';
import { RS, jsonHubSocket, nextMessage, openSocket } from '../lib/raw.mjs';
import { startServer } from '../lib/server.mjs';

const CLOSED_WITH_ERROR = { type: 7, error: 'Connection closed with an error.', allowReconnect: true };

let server;
let bystanders;
before(async () => {
  server = await startServer();
  bystanders = await Promise.all(protocols.map((protocol) => connect(server.hubUrl, protocol, { token: 'bystander' })));
});
after(async () => {
  await Promise.all(bystanders.map((connection) => connection.stop()));
  assert.equal(await server.stop(), 0, server.stderr());
});

/** Every bystander still gets answers. */
async function bystandersWork() {
  for (const connection of bystanders) {
    assert.equal(await connection.invoke('Add', 20, 22), 42);
  }
}

beforeEach(async () => {
  await bystandersWork();
});

it('garbage after a valid handshake: Close with error and allowReconnect, then the socket closes', async () => {
  const hub = await jsonHubSocket(server.hubUrl);
  hub.send(`this is not JSON${RS}`);
  assert.deepEqual({ ...(await nextMessage(hub)) }, CLOSED_WITH_ERROR);
  assert.equal(await hub.closed, 1000);
  await bystandersWork();
});

it('garbage in a MessagePack connection: Close with error, then the socket closes', async () => {
  const hub = openSocket(server.hubUrl.replace(/^http/, 'ws'));
  await hub.opened;
  hub.send(`{"protocol":"messagepack","version":1}${RS}`);
  const response = await hub.next();
  assert.equal(Buffer.from(response).toString('utf8'), `{}${RS}`);
  // A length prefix of 3, then three bytes that MessagePack never uses.
  hub.send(Buffer.from([0x03, 0xc1, 0xc1, 0xc1]));
  const frame = await hub.next();
  const bytes = frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.byteLength);
  const close = protocols[1].create().parseMessages(bytes, { log() {} });
  assert.deepEqual(close.map((message) => ({ ...message })), [CLOSED_WITH_ERROR]);
  assert.equal(await hub.closed, 1000);
  await bystandersWork();
});

it('an unknown protocol in the handshake gets a handshake error, then the socket closes', async () => {
  const hub = openSocket(server.hubUrl.replace(/^http/, 'ws'));
  await hub.opened;
  hub.send(`{"protocol":"foo","version":1}${RS}`);
  assert.equal(await hub.next(), `{"error":"The protocol 'foo' is not supported."}${RS}`);
  await hub.closed;
  await bystandersWork();
});

it('a message over 32 768 bytes: Close with error', async () => {
  const hub = await jsonHubSocket(server.hubUrl);
  const big = JSON.stringify({ type: 1, invocationId: '1', target: 'Echo', arguments: ['x'.repeat(33_000)] });
  hub.send(big + RS);
  assert.deepEqual({ ...(await nextMessage(hub)) }, CLOSED_WITH_ERROR);
  await hub.closed;
  await bystandersWork();
});

it('a message just under 32 768 bytes is answered', async () => {
  const hub = await jsonHubSocket(server.hubUrl);
  const text = 'y'.repeat(32_000);
  hub.send(JSON.stringify({ type: 1, invocationId: '1', target: 'Echo', arguments: [text] }) + RS);
  const completion = await nextMessage(hub);
  assert.equal(completion.result, text);
  hub.socket.close();
  await hub.closed;
});

it('a Sequence ahead of what was sent on a stateful connection: Close with error', async () => {
  const negotiate = await fetch(`${server.hubUrl}/negotiate?negotiateVersion=1&useStatefulReconnect=true`, {
    method: 'POST',
  });
  assert.equal(negotiate.status, 200);
  const { connectionToken, useStatefulReconnect } = await negotiate.json();
  assert.equal(useStatefulReconnect, true);
  const hub = await jsonHubSocket(server.hubUrl, { query: `?id=${connectionToken}`, version: 2 });
  hub.send(JSON.stringify({ type: 1, invocationId: '1', target: 'Add', arguments: [1, 2] }) + RS);
  assert.equal((await nextMessage(hub)).result, 3);
  // One message was sent, so the next id the server expects is 2; 5 is ahead of it.
  hub.send(JSON.stringify({ type: 9, sequenceId: 5 }) + RS);
  let message = await nextMessage(hub);
  while (message.type === 8) message = await nextMessage(hub); // acks of the invocation may come first
  // Not a parse error, so the server does not invite a reconnect (only the error text is fixed).
  assert.equal(message.type, 7);
  assert.equal(message.error, 'Connection closed with an error.');
  await hub.closed;
  await bystandersWork();
});

it('a token that is not a user id gets 401 on negotiate and on the WebSocket', async () => {
  const negotiate = await fetch(`${server.hubUrl}/negotiate?negotiateVersion=1`, {
    method: 'POST',
    headers: { Authorization: 'Bearer not/a/user' },
  });
  assert.equal(negotiate.status, 401);
  const hub = openSocket(`${server.hubUrl.replace(/^http/, 'ws')}?access_token=${encodeURIComponent('bad token')}`);
  await assert.rejects(hub.opened, { message: 'HTTP 401' });
  await bystandersWork();
});

it('a GET on negotiate gets 405', async () => {
  const response = await fetch(`${server.hubUrl}/negotiate?negotiateVersion=1`);
  assert.equal(response.status, 405);
  await bystandersWork();
});
