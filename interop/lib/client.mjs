// Official SignalR clients for the tests, in either hub protocol.
import * as signalR from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';

export { signalR };

/** The hub protocols every test runs in. */
export const protocols = [
  { name: 'json', create: () => new signalR.JsonHubProtocol() },
  { name: 'messagepack', create: () => new MessagePackHubProtocol() },
];

/**
 * A started connection to `hubUrl` with `protocol` (one of `protocols`). `token` becomes the access token (the
 * user id); `handlers` are client methods to register before start; `statefulReconnect` asks for it.
 */
export async function connect(hubUrl, protocol, { token, handlers = {}, statefulReconnect = false } = {}) {
  const options = token === undefined ? {} : { accessTokenFactory: () => token };
  const builder = new signalR.HubConnectionBuilder()
    .withUrl(hubUrl, { ...options, transport: signalR.HttpTransportType.WebSockets })
    .withHubProtocol(protocol.create())
    .configureLogging(signalR.LogLevel.None);
  if (statefulReconnect) builder.withStatefulReconnect();
  const connection = builder.build();
  for (const [name, handler] of Object.entries(handlers)) connection.on(name, handler);
  await connection.start();
  return connection;
}

/** Collects the items of a server-to-client stream until it completes. */
export function collect(stream) {
  return new Promise((resolve, reject) => {
    const items = [];
    stream.subscribe({ next: (item) => items.push(item), complete: () => resolve(items), error: reject });
  });
}

/**
 * A queue of the `Receive(from, text)` calls a connection gets: register `handler` as `Receive`, then
 * `next()` resolves with the next `[from, text]` (or rejects after `timeoutMs`).
 */
export function receiver(timeoutMs = 5_000) {
  const arrived = [];
  const waiting = [];
  return {
    handler: (from, text) => {
      const waiter = waiting.shift();
      if (waiter) waiter.resolve([from, text]);
      else arrived.push([from, text]);
    },
    next() {
      if (arrived.length > 0) return Promise.resolve(arrived.shift());
      return new Promise((resolve, reject) => {
        const waiter = { resolve };
        waiting.push(waiter);
        setTimeout(() => {
          const at = waiting.indexOf(waiter);
          if (at >= 0) {
            waiting.splice(at, 1);
            reject(new Error('no Receive call arrived in time'));
          }
        }, timeoutMs).unref();
      });
    },
    /** Messages that arrived and were not taken. */
    pending: () => arrived.slice(),
  };
}
