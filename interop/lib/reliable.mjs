// What an official client sees of reliable delivery (CONFORMANCE.md, "Reliable delivery in the conformance
// server"): recorders for the `Deliver` and `Receipt` client results that answer each call as a test says (the
// returned value is the ack; a throw, or no value, the nack), and a poll for conditions the server reaches soon
// after an event the client cannot see (an ack being recorded).
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Records the calls of one client method, in arrival order. `toItem(...args)` is what a call is recorded as;
 * `answer(item, attempt)` is the handler's result, where `attempt` counts the calls with the same `key(item)`
 * so far (1 for the first).
 */
function recorder(name, toItem, key, answer) {
  const items = [];
  const times = [];
  const attempts = new Map();
  let taken = 0;
  let wake = [];
  return {
    /** The client method's handler. */
    handler(...args) {
      const item = toItem(...args);
      items.push(item);
      times.push(performance.now());
      const attempt = (attempts.get(key(item)) ?? 0) + 1;
      attempts.set(key(item), attempt);
      for (const resolve of wake.splice(0)) resolve();
      return answer(item, attempt);
    },
    /** The next call not taken yet; rejects if none arrives within `timeoutMs`. */
    async next(timeoutMs = 5_000) {
      const deadline = performance.now() + timeoutMs;
      while (taken >= items.length) {
        const left = deadline - performance.now();
        if (left <= 0) throw new Error(`no ${name} call arrived within ${timeoutMs} ms`);
        await new Promise((resolve) => {
          const woken = () => {
            clearTimeout(timer);
            resolve();
          };
          const timer = setTimeout(() => {
            wake = wake.filter((waiter) => waiter !== woken);
            resolve();
          }, left);
          wake.push(woken);
        });
      }
      taken += 1;
      return items[taken - 1];
    },
    /** Every call so far. */
    all: () => items.slice(),
    /** When each call arrived (`performance.now()`), parallel to `all()`. */
    times: () => times.slice(),
    /** Calls that arrived and were not taken by `next()`. */
    untaken: () => items.slice(taken),
  };
}

/**
 * A `Deliver` handler that records each message (`{id, from, text}`) and answers with `answer(message, attempt)`,
 * by default `true` (the ack). `attempt` counts the deliveries of that message id to this handler.
 */
export function deliveries(answer = () => true) {
  return recorder('Deliver', (message) => message, (message) => message.id, answer);
}

/** A `Receipt` handler that records each receipt as `[id, status]` and acks it. */
export function receipts() {
  return recorder('Receipt', (id, status) => [id, status], ([id]) => id, () => true);
}

/** A promise and the function that resolves it: a handler can hold its answer until a test releases it. */
export function gate() {
  let open;
  const opened = new Promise((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

/** Resolves once `check()` resolves truthy; polls every 50 ms and rejects after `timeoutMs` with `what`. */
export async function eventually(what, check, timeoutMs = 3_000) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}
