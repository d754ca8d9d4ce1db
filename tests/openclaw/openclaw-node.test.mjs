// openclaw-node (the npm client of OpenClaw's gateway) against the real
// moltworker binary: it connects with its device identity, is told pairing is
// required, an operator approves it, it comes back with its device token,
// chats (streamed `agent` events), reads the history and lists sessions.
//
// Needs MOLTWORKER_BIN (the built binary).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { OpenClawClient } from 'openclaw-node';
import WebSocket from 'ws';

// openclaw-node expects Node 22's global WebSocket (its `send` reads
// `WebSocket.OPEN`); on Node 20, `ws` stands in for it.
globalThis.WebSocket ??= WebSocket;

const BIN = process.env.MOLTWORKER_BIN;
let gateway, stateDir, wsUrl, token;

before(async () => {
  assert.ok(BIN, 'set MOLTWORKER_BIN to the moltworker binary');
  stateDir = mkdtempSync(join(tmpdir(), 'molt-openclaw-'));
  gateway = spawn(BIN, [], {
    env: { ...process.env, MOLT_STATE_DIR: stateDir, MOLT_BIND: '127.0.0.1:0', RUST_LOG: 'warn', MOLTBOT_GATEWAY_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const firstLine = await new Promise((resolve, reject) => {
    createInterface({ input: gateway.stdout }).once('line', resolve);
    gateway.once('exit', (code) => reject(new Error(`moltworker exited with ${code}`)));
  });
  const url = new URL(firstLine.replace(/^Control UI: /, ''));
  token = url.searchParams.get('token');
  wsUrl = `ws://${url.host}/`;
});

after(() => {
  gateway?.kill('SIGTERM');
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

/** An operator on a plain socket (gateway token, no device): sends requests, collects events. */
async function operator() {
  const socket = new WebSocket(`${wsUrl}ws`);
  const frames = [];
  const waiters = [];
  socket.on('message', (data) => {
    const frame = JSON.parse(data.toString());
    frames.push(frame);
    for (const waiter of waiters.splice(0)) waiter();
  });
  const next = async (match) => {
    for (;;) {
      const index = frames.findIndex(match);
      if (index >= 0) return frames.splice(index, 1)[0];
      await new Promise((resolve) => waiters.push(resolve));
    }
  };
  let id = 0;
  const request = async (method, params) => {
    const rid = `op-${++id}`;
    socket.send(JSON.stringify({ type: 'req', id: rid, method, params }));
    return next((f) => f.type === 'res' && f.id === rid);
  };
  await next((f) => f.event === 'connect.challenge');
  const hello = await request('connect', {
    minProtocol: 4, maxProtocol: 4, auth: { token },
    client: { id: 'cli', version: '1', platform: 'linux', mode: 'cli' },
  });
  assert.equal(hello.ok, true, JSON.stringify(hello));
  return { request, next, close: () => socket.close() };
}

test('openclaw-node pairs, comes back with its device token, chats and reads history', async () => {
  const identity = join(stateDir, 'node-identity.json');
  const admin = await operator();

  // First connect: pairing required, with the request id in the close reason.
  const first = new OpenClawClient({ url: wsUrl, token, deviceIdentityPath: identity, autoReconnect: false });
  const pairing = new Promise((resolve) => first.once('pairingRequired', resolve));
  first.on('error', () => {});
  await assert.rejects(first.connect(), /closed before handshake/);
  const { requestId } = await pairing;
  assert.match(requestId, /^[0-9a-f-]{36}$/);
  const requested = await admin.next((f) => f.event === 'device.pair.requested');
  assert.equal(requested.payload.requestId, requestId);
  const approved = await admin.request('device.pair.approve', { requestId });
  assert.equal(approved.ok, true, JSON.stringify(approved));

  // Approved: in, and handed a device token, which it keeps.
  const second = new OpenClawClient({ url: wsUrl, token, deviceIdentityPath: identity, autoReconnect: false });
  second.on('error', () => {});
  const hello = await second.connect();
  assert.equal(hello.protocol, 4);
  assert.ok(hello.auth.deviceToken, JSON.stringify(hello.auth));
  assert.equal(JSON.parse(readFileSync(identity, 'utf8')).deviceToken, hello.auth.deviceToken);
  await second.disconnect();

  // Back without the gateway token: its device token alone lets it in.
  const client = new OpenClawClient({ url: wsUrl, deviceIdentityPath: identity, autoReconnect: false });
  client.on('error', () => {});
  const again = await client.connect();
  assert.equal(again.auth.method, 'device-token');
  assert.ok(client.hasMethod('agent') && client.hasMethod('chat.history'));

  // Chat through `agent`: the reply streams, the run ends.
  const chunks = [];
  for await (const chunk of client.chat('hello from openclaw-node')) chunks.push(chunk);
  const text = chunks.filter((c) => c.type === 'text').map((c) => c.text).join('');
  assert.equal(text, 'echo: hello from openclaw-node');
  assert.ok(chunks.some((c) => c.type === 'agent_start') && chunks.some((c) => c.type === 'agent_end'),
    JSON.stringify(chunks));
  assert.ok(!chunks.some((c) => c.type === 'error'), JSON.stringify(chunks));

  // chat.send with its idempotency key, answered as started, streamed as chat events.
  const events = [];
  client.on('event', (event) => events.push(event));
  const sent = await client.request('chat.send', { sessionKey: 'main', message: 'and once more', idempotencyKey: 'node-2' });
  assert.equal(sent.payload.status, 'started');
  for (let i = 0; i < 100 && !events.some((e) => e.event === 'chat' && e.payload.state === 'final'); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const final = events.find((e) => e.event === 'chat' && e.payload.state === 'final');
  assert.equal(final?.payload.message.content[0].text, 'echo: and once more');

  const history = await client.sessions.history('main', { limit: 10 });
  const said = history.messages.map((m) => `${m.role}:${m.content.map((b) => b.text).join('')}`);
  assert.deepEqual(said.slice(-4), [
    'user:hello from openclaw-node', 'assistant:echo: hello from openclaw-node',
    'user:and once more', 'assistant:echo: and once more',
  ]);
  const sessions = await client.sessions.list();
  assert.equal(sessions.sessions.length, 1);

  await client.disconnect();
  admin.close();
});
