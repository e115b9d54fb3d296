// A raw WebSocket client (the `ws` package) that speaks the hub protocol by hand, to send what the official
// clients never would.
import { once } from 'node:events';
import WebSocket from 'ws';

import { signalR } from './client.mjs';

const RS = '\u001e';

/** A WebSocket to `url` that queues what it receives; `opened` rejects with the HTTP status if refused. */
export function openSocket(url, headers = {}) {
  const socket = new WebSocket(url, { headers });
  const frames = [];
  const waiting = [];
  // ws 7 gives text frames as strings and binary frames as Buffers.
  socket.on('message', (frame) => {
    const waiter = waiting.shift();
    if (waiter) waiter(frame);
    else frames.push(frame);
  });
  const closed = once(socket, 'close').then(([code]) => code);
  const opened = new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('unexpected-response', (_request, response) => reject(new Error(`HTTP ${response.statusCode}`)));
    socket.once('error', reject);
  });
  return {
    socket,
    opened,
    /** Resolves with the code the WebSocket closed with. */
    closed,
    send: (data) => socket.send(data),
    /** The next frame (a string for text, a Buffer for binary); rejects if none arrives within 5 s. */
    next() {
      if (frames.length > 0) return Promise.resolve(frames.shift());
      return new Promise((resolve, reject) => {
        const waiter = (frame) => resolve(frame);
        waiting.push(waiter);
        setTimeout(() => {
          const at = waiting.indexOf(waiter);
          if (at >= 0) {
            waiting.splice(at, 1);
            reject(new Error('no frame arrived in time'));
          }
        }, 5_000).unref();
      });
    },
  };
}

/** Hub messages in a frame, read by the official client's own parsers. */
export function parseFrame(frame) {
  if (typeof frame === 'string') {
    return new signalR.JsonHubProtocol().parseMessages(frame, signalR.NullLogger.instance);
  }
  throw new Error('parseFrame reads JSON text frames only');
}

/** A WebSocket on `hubUrl` (ws://) that completed the JSON handshake with `version`; `query` is added. */
export async function jsonHubSocket(hubUrl, { query = '', version = 1 } = {}) {
  const url = hubUrl.replace(/^http/, 'ws') + query;
  const hub = openSocket(url);
  await hub.opened;
  hub.send(`{"protocol":"json","version":${version}}${RS}`);
  const response = await hub.next();
  if (response !== `{}${RS}`) throw new Error(`handshake refused: ${response}`);
  return hub;
}

/** The next hub message that is not a Ping. */
export async function nextMessage(hub) {
  for (;;) {
    const messages = parseFrame(await hub.next()).filter((m) => m.type !== signalR.MessageType.Ping);
    if (messages.length > 0) return messages[0];
  }
}

export { RS };
