// What the Worker's tests stand up around it: the Worker itself in workerd
// (Miniflare), a container launcher that starts the real moltworker binary
// per sandbox (the stand-in for Cloudflare Containers), an Access team (its
// JWKS, and tokens signed as Access signs them), and a Browser Rendering
// stand-in backed by Debian's Chromium. Every server binds 127.0.0.1 on a
// free port and stops with the test.

import { Miniflare } from 'miniflare';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { Launcher, freePort, json } from '../dev-launcher.mjs';

export { Launcher, freePort };

export const GATEWAY_TOKEN = 'edge-test-gateway-token-0123456789';
export const CDP_SECRET = 'edge-test-cdp-secret-0123456789';
export const TEAM = 'molt-test.cloudflareaccess.com';
export const AUD = 'edge-test-audience-tag';
const WORKER_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function until(what, check, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function listen(handler) {
  return new Promise((resolve) => {
    const server = http.createServer(handler);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}


/// An Access team: its signing keys at /cdn-cgi/access/certs, and tokens
/// signed as Access signs them (RS256, `kid`, `iss`, `aud`, `exp`, `nbf`).
export class AccessTeam {
  constructor() {
    this.key = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    this.stranger = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    this.kid = 'edge-test-key-1';
  }

  async start() {
    const jwk = { ...this.key.publicKey.export({ format: 'jwk' }), kid: this.kid, alg: 'RS256', use: 'sig' };
    this.server = await listen((req, res) => {
      if (req.url === '/cdn-cgi/access/certs') return json(res, 200, { keys: [jwk], public_cert: { kid: this.kid } });
      json(res, 404, {});
    });
    this.certsUrl = `http://127.0.0.1:${this.server.address().port}/cdn-cgi/access/certs`;
    return this;
  }

  /// A token for `email`; `claims` and `header` override the defaults.
  token(email, { claims = {}, header = {}, key = this.key.privateKey } = {}) {
    const now = Math.floor(Date.now() / 1000);
    const head = { alg: 'RS256', kid: this.kid, typ: 'JWT', ...header };
    const body = {
      aud: [AUD], email, sub: `sub-${email}`, iss: `https://${TEAM}`,
      iat: now, nbf: now, exp: now + 600, type: 'app', ...claims,
    };
    const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const input = `${encode(head)}.${encode(body)}`;
    let signature;
    if (head.alg === 'RS256') signature = crypto.sign('sha256', Buffer.from(input), key);
    else if (head.alg === 'HS256') {
      const secret = this.key.publicKey.export({ format: 'pem', type: 'spki' });
      signature = crypto.createHmac('sha256', secret).update(input).digest();
    } else signature = Buffer.alloc(0);
    return `${input}.${signature.toString('base64url')}`;
  }

  async stop() {
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/// The stand-in for the Browser Rendering binding, with the routes of
/// @cloudflare/puppeteer's current client and of Miniflare's own emulation
/// (which downloads Chrome, impossible offline): POST /v1/devtools/browser
/// gives a session (a Debian Chromium), GET /v1/devtools/browser/<id> with a
/// WebSocket upgrade connects to its CDP socket, one JSON message per text
/// frame; anything else is refused.
export class BrowserRendering {
  constructor() {
    this.sessions = new Map();
    this.acquired = 0;
    this.chromium = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  }

  async start() {
    this.wss = new WebSocketServer({ noServer: true });
    this.server = await listen((req, res) => this.handle(req, res));
    this.server.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head));
    this.port = this.server.address().port;
    return this;
  }

  async handle(req, res) {
    const url = new URL(req.url, 'http://browser');
    if (url.pathname === '/v1/devtools/browser') {
      if (req.method !== 'POST') return json(res, 405, { error: 'method not allowed' });
      const session = await this.launch();
      this.acquired += 1;
      return json(res, 200, { sessionId: session.id });
    }
    if (url.pathname.startsWith('/v1/devtools/browser/')) {
      return json(res, 400, { error: 'expected a WebSocket upgrade' });
    }
    json(res, 404, { error: 'not found' });
  }

  launch() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-edge-browser-'));
    const child = spawn(this.chromium, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${dir}`, '--remote-debugging-port=0', 'about:blank',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    return new Promise((resolve, reject) => {
      let text = '';
      child.stderr.on('data', (chunk) => {
        text += chunk;
        const found = /DevTools listening on (ws:\/\/\S+)/.exec(text);
        if (found && !child.devtools) {
          child.devtools = found[1];
          const session = { id: crypto.randomUUID(), child, devtools: found[1] };
          this.sessions.set(session.id, session);
          resolve(session);
        }
      });
      child.on('exit', () => reject(new Error(`chromium exited: ${text}`)));
    });
  }

  upgrade(req, socket, head) {
    const id = /^\/v1\/devtools\/browser\/([^/?]+)/.exec(req.url)?.[1];
    const session = id && this.sessions.get(id);
    if (!session) {
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (client) => {
      const browser = new WebSocket(session.devtools, { perMessageDeflate: false });
      const pending = [];
      browser.on('open', () => { for (const message of pending.splice(0)) browser.send(message); });
      client.on('message', (data) => {
        const text = data.toString();
        if (browser.readyState === WebSocket.OPEN) browser.send(text);
        else pending.push(text);
      });
      browser.on('message', (data) => client.send(data.toString()));
      client.on('close', () => browser.close());
      browser.on('close', () => client.close());
    });
  }

  async stop() {
    for (const session of this.sessions.values()) session.child.kill('SIGKILL');
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/// The Worker in workerd, with `vars` as its variables and secrets.
export async function startWorker(vars, { browser, port } = {}) {
  const logs = { text: '' };
  const mf = new Miniflare({
    handleRuntimeStdio(stdout, stderr) {
      stdout.on('data', (chunk) => { logs.text += chunk; });
      stderr.on('data', (chunk) => { logs.text += chunk; });
    },
    rootPath: WORKER_DIR,
    modules: true,
    scriptPath: path.join(WORKER_DIR, 'build/index.js'),
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: '2026-05-01',
    durableObjects: { Sandbox: 'Sandbox' },
    bindings: vars,
    serviceBindings: browser ? { BROWSER: { external: { address: `127.0.0.1:${browser.port}`, http: {} } } } : {},
    host: '127.0.0.1',
    port: port ?? (await freePort()),
    unsafeTriggerHandlers: true,
  });
  const url = (await mf.ready).toString().replace(/\/$/, '');
  return { mf, url, logs, stop: () => mf.dispose() };
}

/// The variables of a complete deployment, pointed at this machine's stand-ins.
export function deploymentVars({ launcher, team, extra = {} }) {
  const pass = (name) => (process.env[name] ? { [name]: process.env[name] } : {});
  return {
    MOLTBOT_GATEWAY_TOKEN: GATEWAY_TOKEN,
    CF_ACCESS_TEAM_DOMAIN: TEAM,
    CF_ACCESS_AUD: AUD,
    MOLT_ACCESS_CERTS_URL: team.certsUrl,
    CDP_SECRET: CDP_SECRET,
    MOLT_DEV_CONTAINER_LAUNCHER: launcher.url,
    S3_REGION: 'us-east-1',
    ...pass('ANTHROPIC_API_KEY'),
    ...pass('ANTHROPIC_BASE_URL'),
    ...pass('S3_ENDPOINT'),
    ...pass('R2_ACCESS_KEY_ID'),
    ...pass('R2_SECRET_ACCESS_KEY'),
    ...extra,
  };
}

/// An OpenClaw protocol client over `ws`.
export class GatewayClient {
  static async connect(url, { token = GATEWAY_TOKEN, headers = {} } = {}) {
    const client = new GatewayClient(new WebSocket(url, { headers, perMessageDeflate: false }));
    await new Promise((resolve, reject) => {
      client.ws.once('open', resolve);
      client.ws.once('error', reject);
      client.ws.once('unexpected-response', (_, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
    await client.event('connect.challenge');
    const hello = await client.request('connect', {
      minProtocol: 3, maxProtocol: 3,
      client: { id: 'test', version: '0', platform: 'node', mode: 'test' },
      auth: { token },
    });
    if (!hello.ok) throw new Error(`connect refused: ${JSON.stringify(hello)}`);
    client.hello = hello.payload;
    return client;
  }

  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.waiters = [];
    this.nextId = 1;
    ws.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()));
      for (const wake of this.waiters.splice(0)) wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  async find(predicate, what, timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.frames.findIndex(predicate);
      if (index >= 0) return this.frames.splice(index, 1)[0];
      if (this.closed) throw new Error(`closed (${this.closed.code} ${this.closed.reason}) waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, left);
      });
    }
  }

  event(name, predicate = () => true) {
    return this.find((f) => f.type === 'event' && f.event === name && predicate(f.payload), `event ${name}`);
  }

  request(method, params = {}) {
    const id = String(this.nextId++);
    this.ws.send(JSON.stringify({ type: 'req', id, method, params }));
    return this.find((f) => f.type === 'res' && f.id === id, `the response to ${method}`);
  }

  /// Sends `text` to the main session; resolves with the run's chat events, the final one last.
  async chat(text) {
    const runId = crypto.randomUUID();
    const accepted = await this.request('chat.send', { sessionKey: 'main', message: text, idempotencyKey: runId });
    if (!accepted.ok) throw new Error(`chat.send refused: ${JSON.stringify(accepted)}`);
    const events = [];
    for (;;) {
      const event = await this.event('chat', (p) => p.runId === runId);
      events.push(event.payload);
      if (event.payload.state === 'final' || event.payload.state === 'error') return events;
    }
  }

  close() {
    this.ws.close();
  }
}

/// The text of a chat run's final message.
export function finalText(events) {
  const final = events.at(-1);
  const content = final?.message?.content;
  if (typeof content === 'string') return content;
  return (content ?? []).map((part) => part.text ?? '').join('');
}
