// Starts the conformance server for a test file and stops it afterwards (CONFORMANCE.md, "Start and stop").
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

/** The conformance binary, built by scripts/test (`cargo build --example conformance`). */
export function conformanceBinary() {
  const path = process.env.COURIER_CONFORMANCE_BIN;
  if (!path) {
    throw new Error('COURIER_CONFORMANCE_BIN must name the conformance binary (scripts/test sets it)');
  }
  return path;
}

// Every server started here is killed when the test process exits, whatever the reason.
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Runs the conformance server with `args` (default `--addr 127.0.0.1:0`) and resolves once it printed its
 * `listening on` line. `stderr` collects its logs, shown when a test fails.
 */
export async function startServer(args = ['--addr', '127.0.0.1:0']) {
  const child = spawn(conformanceBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  const exited = once(child, 'exit');
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const lines = createInterface({ input: child.stdout });
  const firstLine = once(lines, 'line').then(([line]) => line);
  const early = exited.then(([code]) => {
    throw new Error(`the server exited with ${code} before listening:\n${stderr}`);
  });
  let timer;
  const slow = new Promise((_, reject) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the server did not announce its address within 30 s:\n${stderr}`));
    }, 30_000);
  });
  const line = await Promise.race([firstLine, early, slow]).finally(() => clearTimeout(timer));
  early.catch(() => {});
  const match = /^listening on (http:\/\/\S+:\d+)$/.exec(line);
  if (!match) {
    child.kill('SIGKILL');
    throw new Error(`unexpected first line on stdout: ${JSON.stringify(line)}`);
  }
  const url = match[1];
  return {
    url,
    hubUrl: `${url}/hub`,
    host: new URL(url).hostname,
    port: Number(new URL(url).port),
    process: child,
    stderr: () => stderr,
    /** Sends `signal` and resolves with the exit code (or rejects after 10 s, killing the server). */
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const [code] = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Runs the conformance binary with `args` to completion: its exit code, stdout and stderr. */
export async function runToExit(args) {
  const child = spawn(conformanceBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const [code] = await once(child, 'exit');
  clearTimeout(timer);
  running.delete(child);
  return { code, stdout, stderr };
}
