// A TCP proxy between a client and the server, whose sockets a test can destroy to break connections mid-flight.
import net from 'node:net';
import { once } from 'node:events';

/** Forwards 127.0.0.1:<port> to `target` ({ host, port }) until `close()`. */
export async function startProxy(target) {
  const pairs = new Set();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted += 1;
    const upstream = net.connect(target.port, target.host);
    const pair = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of pair) {
      socket.on('error', end);
      socket.on('close', end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** How many client connections the proxy has taken so far. */
    accepted: () => accepted,
    /** Destroys every open connection (both sides, no close handshake): the network "breaks". */
    breakAll() {
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    async close() {
      this.breakAll();
      server.close();
      await once(server, 'close');
    },
  };
}
