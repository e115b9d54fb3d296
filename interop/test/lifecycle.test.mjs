// The conformance server's start and stop contract: the listening line, signals, exit codes.
import assert from 'node:assert/strict';
import { it } from 'node:test';

import { connect, protocols } from '../lib/client.mjs';
import { jsonHubSocket, nextMessage } from '../lib/raw.mjs';
import { runToExit, startServer } from '../lib/server.mjs';

for (const signal of ['SIGTERM', 'SIGINT']) {
  it(`${signal} closes connected clients with a Close message and exits with 0`, async () => {
    const server = await startServer();
    const connections = await Promise.all(protocols.map((protocol) => connect(server.hubUrl, protocol)));
    const closed = connections.map((connection) => new Promise((resolve) => connection.onclose(resolve)));
    for (const connection of connections) assert.equal(await connection.invoke('Add', 1, 2), 3);
    const raw = await jsonHubSocket(server.hubUrl);
    const code = await server.stop(signal);
    assert.equal(code, 0, server.stderr());
    // What the official clients got, seen on the wire: a Close without error that allows a reconnect elsewhere.
    assert.deepEqual({ ...(await nextMessage(raw)) }, { type: 7, allowReconnect: true });
    // The official client reports a Close without error as a close without error.
    assert.deepEqual(await Promise.all(closed), [undefined, undefined]);
  });
}

it('reads port 0 as a free port and announces the real one', async () => {
  const first = await startServer(['--addr', '127.0.0.1:0']);
  const second = await startServer(['--addr=127.0.0.1:0']);
  try {
    assert.notEqual(first.port, 0);
    assert.notEqual(first.port, second.port);
  } finally {
    assert.equal(await first.stop(), 0);
    assert.equal(await second.stop(), 0);
  }
});

it('refuses unknown flags, bad values and flags not supported yet with one line on stderr and code 2', async () => {
  for (const args of [
    ['--bogus'],
    ['--addr'],
    ['--addr', 'not-an-address'],
    ['--store'],
    ['--store='],
    ['--redis', 'redis://127.0.0.1:6379'],
  ]) {
    const { code, stdout, stderr } = await runToExit(args);
    assert.equal(code, 2, `${args}: ${stderr}`);
    assert.equal(stdout, '');
    assert.equal(stderr.split('\n').filter(Boolean).length, 1, `${args}: ${stderr}`);
  }
});
