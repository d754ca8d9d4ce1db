// A local stand-in for Cloudflare Containers, for `wrangler dev` and the
// Worker's tests: the Worker's Sandbox object, finding no container runtime,
// asks this launcher (MOLT_DEV_CONTAINER_LAUNCHER) to start, signal and stop
// one real moltworker gateway per sandbox, with exactly the environment the
// Worker passes and a fresh, empty state directory, as a container's disk is.
//
//   cargo build -p moltworker
//   MOLTWORKER_BIN=../../../target/debug/moltworker node dev-launcher.mjs   # prints its URL
//   npx wrangler dev --var MOLT_DEV_CONTAINER_LAUNCHER:<that URL> --var DEV_MODE:true

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/// A free port on 127.0.0.1.
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/// Answers `res` with `status` and `body` as JSON.
export function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/// The stand-in for Cloudflare Containers: POST .../start runs the real
/// gateway with exactly the environment the Worker passed (and a fresh,
/// empty state directory, as a container's disk is), reporting `running`
/// from the start as Containers does, optionally after `bootDelayMs`.
export class Launcher {
  constructor({ bootDelayMs = 0, bin = process.env.MOLTWORKER_BIN } = {}) {
    this.bootDelayMs = bootDelayMs;
    this.containers = new Map();
    this.children = new Set();
    this.stopped = false;
    this.bin = bin;
    if (!this.bin) throw new Error('MOLTWORKER_BIN is not set');
  }

  async start(port = 0) {
    // However this process ends (another library's signal handler may
    // exit first), the gateways it started end with it.
    process.on('exit', () => {
      for (const child of this.children) child.kill('SIGKILL');
    });
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise((resolve) => this.server.listen(port, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  container(name) {
    if (!this.containers.has(name)) {
      this.containers.set(name, { name, running: false, starts: 0, signals: [], logs: '', port: null });
    }
    return this.containers.get(name);
  }

  async handle(req, res) {
    const match = /^\/containers\/([^/]+)\/(status|start|signal|destroy)$/.exec(req.url);
    if (!match) return json(res, 404, { error: 'not found' });
    const container = this.container(decodeURIComponent(match[1]));
    const body = req.method === 'POST' ? JSON.parse((await readBody(req)) || '{}') : {};
    switch (match[2]) {
      case 'status':
        return json(res, 200, { running: container.running, port: container.ready ? container.port : null });
      // As strict as Containers: start() on a running container, and
      // signal() or destroy() on a stopped one, are errors.
      case 'start':
        if (container.running) return json(res, 409, { error: 'the container is already running' });
        await this.boot(container, body.env ?? {});
        return json(res, 200, { running: true });
      case 'signal':
        if (!container.process) return json(res, 409, { error: 'the container is not running' });
        container.signals.push(body.signo);
        container.process.kill(body.signo === 10 ? 'SIGUSR1' : 'SIGTERM');
        return json(res, 200, {});
      case 'destroy':
        if (!container.running) return json(res, 409, { error: 'the container is not running' });
        container.process?.kill('SIGKILL');
        return json(res, 200, {});
    }
  }

  async boot(container, env) {
    container.running = true;
    container.ready = false;
    container.starts += 1;
    container.env = env;
    container.port = await freePort();
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), `molt-edge-${container.name}-`));
    const launch = () => {
      if (this.stopped) return;
      const child = spawn(this.bin, [], {
        env: { ...env, PATH: process.env.PATH, MOLT_BIND: `127.0.0.1:${container.port}`, MOLT_STATE_DIR: stateDir },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      container.process = child;
      child.stdout.on('data', (chunk) => { container.logs += chunk; });
      child.stderr.on('data', (chunk) => { container.logs += chunk; });
      this.children.add(child);
      child.on('exit', (code, signal) => {
        this.children.delete(child);
        // A gateway that ends after its successor started leaves it be.
        if (container.process !== child) return;
        container.exit = { code, signal };
        container.running = false;
        container.ready = false;
        container.process = null;
      });
      container.ready = true;
    };
    if (this.bootDelayMs > 0) setTimeout(launch, this.bootDelayMs);
    else launch();
  }

  async stop() {
    this.stopped = true;
    for (const child of this.children) child.kill('SIGKILL');
    await new Promise((resolve) => this.server.close(resolve));
  }
}


if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const launcher = await new Launcher().start(Number(process.env.PORT ?? 8788));
  console.log(`container launcher: ${launcher.url} (gateway: ${launcher.bin})`);
  const stop = async () => { await launcher.stop(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
