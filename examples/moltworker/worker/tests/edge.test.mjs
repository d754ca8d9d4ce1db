// The Worker in workerd, in front of the real gateway: routes, the
// configuration page, Access, chat over WebSocket, the admin page, /cdp,
// one gateway per user, the loading page, the cron backup, and sleep.
// Run by ../tests/edge.rs (cargo test -p moltworker --test edge -- --ignored),
// which provides the S3 server, the model fake and the gateway binary.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { WebSocket } from 'ws';
import {
  AccessTeam, BrowserRendering, CDP_SECRET, GATEWAY_TOKEN, GatewayClient, Launcher, TEAM,
  deploymentVars, finalText, freePort, sleep, startWorker, until,
} from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const launchBrowser = () => chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

/// A bucket of its own on the S3 server, so that tests share no state.
function bucket(name) {
  fs.mkdirSync(path.join(process.env.S3_ROOT, name), { recursive: true });
  return name;
}

describe('the Worker in front of one gateway', () => {
  let team, launcher, browser, worker;

  before(async () => {
    team = await new AccessTeam().start();
    launcher = await new Launcher().start();
    browser = await new BrowserRendering().start();
    // WORKER_URL names the Worker, so that the gateway's browser tools come
    // back through its /cdp; the model fake browses when asked to.
    const port = await freePort();
    worker = await startWorker(
      deploymentVars({
        launcher, team,
        extra: {
          R2_BUCKET_NAME: bucket('edge-main'), WORKER_URL: `http://127.0.0.1:${port}`,
          MOLT_MODEL: 'browse', MOLT_EGRESS_ALLOW_NETWORKS: '127.0.0.0/8',
        },
      }),
      { browser, port },
    );
  });

  after(async () => {
    await worker?.stop();
    await launcher?.stop();
    await browser?.stop();
    await team?.stop();
  });

  test('the public routes answer without credentials', async () => {
    const sandbox = await fetch(`${worker.url}/sandbox-health`);
    assert.equal(sandbox.status, 200);
    assert.deepEqual(await sandbox.json(), { status: 'ok', service: 'moltbot-sandbox', gateway_port: 18789 });
    const health = await fetch(`${worker.url}/health`);
    assert.equal(health.status, 200);
    assert.ok(health.headers.get('x-request-id'), 'every response carries a request id');
    // Asking does not start the container.
    assert.deepEqual(await health.json(), { status: 'ok', gateway: 'not_running' });
    assert.equal(launcher.container('moltbot').starts, 0);
  });

  test('Access guards the operator routes: valid in header and cookie, every forgery refused', async () => {
    const status = (headers) => fetch(`${worker.url}/api/status`, { headers });
    const valid = team.token('ops@example.com');
    const viaHeader = await status({ 'cf-access-jwt-assertion': valid });
    assert.equal(viaHeader.status, 200, await viaHeader.clone().text());
    assert.equal((await viaHeader.json()).status, 'running');
    const viaCookie = await status({ cookie: `theme=dark; CF_Authorization=${valid}` });
    assert.equal(viaCookie.status, 200);

    const now = Math.floor(Date.now() / 1000);
    const [head, body] = valid.split('.');
    const tampered = `${head}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url')), email: 'boss@example.com' })).toString('base64url')}.${valid.split('.')[2]}`;
    const forgeries = {
      missing: [undefined, 'no Cloudflare Access token'],
      expired: [team.token('ops@example.com', { claims: { exp: now - 3600 } }), 'expired'],
      'not yet valid': [team.token('ops@example.com', { claims: { nbf: now + 3600 } }), 'not valid yet'],
      'wrong audience': [team.token('ops@example.com', { claims: { aud: ['another-app'] } }), 'another application'],
      'wrong issuer': [team.token('ops@example.com', { claims: { iss: 'https://evil.cloudflareaccess.com' } }), 'another team'],
      'alg none': [team.token('ops@example.com', { header: { alg: 'none' } }), 'not RS256'],
      'HS256 keyed with the public key': [team.token('ops@example.com', { header: { alg: 'HS256' } }), 'not RS256'],
      'unknown kid': [team.token('ops@example.com', { header: { kid: 'nobody' }, key: team.stranger.privateKey }), 'unknown key'],
      'signed by another key': [team.token('ops@example.com', { key: team.stranger.privateKey }), 'signature'],
      tampered: [tampered, 'signature'],
      garbage: ['not-a-jwt', 'malformed'],
    };
    for (const [name, [token, reason]] of Object.entries(forgeries)) {
      const response = await status(token ? { 'cf-access-jwt-assertion': token } : {});
      assert.equal(response.status, 401, name);
      const refusal = await response.json();
      assert.equal(refusal.error, 'Unauthorized', name);
      assert.match(refusal.message, new RegExp(reason), name);
    }
    // A browser without a token is sent to the team's login.
    const page = await fetch(`${worker.url}/_admin/`, { headers: { accept: 'text/html' }, redirect: 'manual' });
    assert.equal(page.status, 302);
    assert.equal(page.headers.get('location'), `https://${TEAM}/`);
  });

  test('the admin page and API through the Worker, behind Access', async () => {
    const token = team.token('ops@example.com');
    const page = await fetch(`${worker.url}/_admin/`, { headers: { accept: 'text/html', cookie: `CF_Authorization=${token}` } });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>Molt admin<\/title>/);
    const devices = await fetch(`${worker.url}/api/admin/devices`, { headers: { 'cf-access-jwt-assertion': token } });
    assert.equal(devices.status, 200);
    assert.ok(Array.isArray((await devices.json()).pending));
  });

  test('a chat over WebSocket through the Worker, streamed, with the gateway token', async () => {
    const client = await GatewayClient.connect(`${worker.url.replace('http', 'ws')}/`);
    try {
      const events = await client.chat('hello through the edge');
      assert.ok(events.some((e) => e.state === 'delta'), 'streamed in deltas');
      assert.equal(events.at(-1).state, 'final');
      assert.match(finalText(events), /You said: hello through the edge/);
    } finally {
      client.close();
    }
  });

  test('close codes and reasons pass through the Worker', async () => {
    const ws = new WebSocket(`${worker.url.replace('http', 'ws')}/`);
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send('this is not a frame');
    const [code, reason] = await new Promise((resolve) => ws.once('close', (c, r) => resolve([c, r.toString()])));
    assert.equal(code, 1008);
    assert.equal(reason, 'invalid request frame');
  });

  test('/cdp: Playwright drives Browser Rendering through the Worker; a wrong secret is refused', async () => {
    const wsBase = worker.url.replace('http', 'ws');
    const version = await fetch(`${worker.url}/cdp/json/version?secret=${CDP_SECRET}`);
    assert.equal(version.status, 200);
    assert.equal((await version.json()).webSocketDebuggerUrl, `${wsBase}/cdp?secret=${CDP_SECRET}`);
    for (const url of [`${worker.url}/cdp/json/version?secret=wrong`, `${worker.url}/cdp/json/version`]) {
      const refused = await fetch(url);
      assert.equal(refused.status, 401);
      assert.deepEqual(await refused.json(), { error: 'Unauthorized' });
    }
    const before = browser.acquired;
    await assert.rejects(chromium.connectOverCDP(`${wsBase}/cdp?secret=wrong`, { timeout: 10000 }));
    assert.equal(browser.acquired, before, 'no session for a wrong secret');

    const remote = await chromium.connectOverCDP(`${wsBase}/cdp?secret=${CDP_SECRET}`, { timeout: 30000 });
    try {
      const context = remote.contexts()[0] ?? (await remote.newContext());
      const page = await context.newPage();
      await page.setContent('<h1 id="t">through the edge</h1>');
      assert.equal(await page.textContent('#t'), 'through the edge');
      assert.equal(await page.evaluate(() => 6 * 7), 42);
    } finally {
      await remote.close();
    }
    assert.equal(browser.acquired, before + 1);
  });

  test('the gateway\'s browser tools reach Browser Rendering through the Worker\'s /cdp', async () => {
    assert.equal(
      launcher.container('moltbot').env.MOLT_BROWSER,
      `${worker.url.replace('http', 'ws')}/cdp?secret=${CDP_SECRET}`,
    );
    const page = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><body><h1>The edge page</h1><p>served for the browser tool</p></body></html>');
    });
    await new Promise((resolve) => page.listen(0, '127.0.0.1', resolve));
    const before = browser.acquired;
    const client = await GatewayClient.connect(`${worker.url.replace('http', 'ws')}/`);
    try {
      const events = await client.chat(`please read http://127.0.0.1:${page.address().port}/ for me`);
      assert.match(finalText(events), /The edge page/);
      assert.ok(browser.acquired > before, 'a Browser Rendering session was acquired through the Worker');
    } finally {
      client.close();
      await new Promise((resolve) => page.close(resolve));
    }
  });

  test('the cron trigger asks the running gateway to back up now', async () => {
    const container = launcher.container('moltbot');
    assert.ok(container.running, 'the earlier tests started it');
    const response = await worker.mf.dispatchFetch('http://localhost/cdn-cgi/handler/scheduled?cron=17+*+*+*+*');
    assert.equal(response.status, 200, await response.text());
    await until('the gateway hears SIGUSR1 and backs up', () => container.signals.includes(10) && container.logs.includes('SIGUSR1: backed up'));
  });

  test('a gateway that died is started again by the next request, which is answered', async () => {
    const container = launcher.container('moltbot');
    const headers = { 'cf-access-jwt-assertion': team.token('ops@example.com') };
    const before = await (await fetch(`${worker.url}/api/status`, { headers })).json();
    container.process.kill('SIGKILL');
    await until('the container is down', () => !container.running);
    const response = await fetch(`${worker.url}/api/status`, { headers });
    assert.equal(response.status, 200, await response.clone().text());
    const after = await response.json();
    assert.notEqual(after.processId, before.processId, 'a new gateway answered');
  });

  test('nothing the Worker answers or logs quotes a secret', async () => {
    const bodies = [];
    for (const url of [
      '/health', '/sandbox-health', '/cdp/json/version?secret=wrong', `/cdp?secret=${CDP_SECRET}`,
      `/api/status?token=${GATEWAY_TOKEN}`, `/?token=${GATEWAY_TOKEN}`, '/nope',
    ]) {
      const response = await fetch(`${worker.url}${url}`, { headers: { accept: 'application/json' } });
      bodies.push(await response.text());
    }
    await sleep(200);
    const secrets = [GATEWAY_TOKEN, CDP_SECRET, process.env.R2_SECRET_ACCESS_KEY, process.env.ANTHROPIC_API_KEY];
    assert.ok(worker.logs.text.includes('GET /cdp 426'), `the log has the requests:\n${worker.logs.text}`);
    for (const secret of secrets) {
      for (const body of bodies) assert.ok(!body.includes(secret), `a response quotes a secret: ${body}`);
      assert.ok(!worker.logs.text.includes(secret), 'the Worker\'s log quotes a secret');
      assert.ok(!launcher.container('moltbot').logs.includes(secret), 'the gateway\'s log quotes a secret');
    }
  });
});

describe('the configuration page', () => {
  test('names each missing secret, as JSON and as a page, quoting no value', async () => {
    const worker = await startWorker({ CDP_SECRET, CF_ACCESS_TEAM_DOMAIN: TEAM, SANDBOX_SLEEP_AFTER: 'soon' });
    try {
      const api = await fetch(`${worker.url}/api/status`);
      assert.equal(api.status, 503);
      const body = await api.json();
      assert.equal(body.error, 'Configuration error');
      assert.equal(body.hint, 'Set these using: wrangler secret put <VARIABLE_NAME>');
      assert.deepEqual(body.missing.slice(0, 2), ['MOLTBOT_GATEWAY_TOKEN', 'CF_ACCESS_AUD']);
      assert.match(body.missing[2], /^ANTHROPIC_API_KEY \(or OPENAI_API_KEY/);
      assert.equal(body.invalid.length, 1);
      assert.match(body.invalid[0], /^SANDBOX_SLEEP_AFTER: expected "never" or a duration/);

      const page = await fetch(`${worker.url}/`, { headers: { accept: 'text/html' } });
      assert.equal(page.status, 503);
      const html = await page.text();
      for (const name of ['MOLTBOT_GATEWAY_TOKEN', 'CF_ACCESS_AUD', 'ANTHROPIC_API_KEY', 'SANDBOX_SLEEP_AFTER']) {
        assert.ok(html.includes(name), `the page names ${name}`);
      }
      assert.ok(!html.includes(CDP_SECRET) && !JSON.stringify(body).includes(CDP_SECRET));
      // Liveness stays public and says what is wrong.
      assert.deepEqual(await (await fetch(`${worker.url}/health`)).json(), { status: 'ok', gateway: 'not_configured' });
    } finally {
      await worker.stop();
    }
  });

  test('a sandbox that cannot start is explained: 503 for HTTP, 1011 for a WebSocket', async () => {
    const team = await new AccessTeam().start();
    const dead = { url: 'http://127.0.0.1:9' };
    const worker = await startWorker(deploymentVars({ launcher: dead, team }));
    try {
      const response = await fetch(`${worker.url}/api/status`, { headers: { 'cf-access-jwt-assertion': team.token('ops@example.com') } });
      assert.equal(response.status, 503);
      const body = await response.json();
      assert.equal(body.error, 'The gateway did not start');
      assert.ok(body.details && body.hint, JSON.stringify(body));
      const ws = new WebSocket(`${worker.url.replace('http', 'ws')}/`);
      const [code, reason] = await new Promise((resolve) => ws.once('close', (c, r) => resolve([c, r.toString()])));
      assert.equal(code, 1011);
      assert.equal(reason, 'The gateway did not start');
    } finally {
      await worker.stop();
      await team.stop();
    }
  });
});

describe('a deployment for a team', () => {
  test('two users reach two separate gateways; an unmapped one is refused', async () => {
    const team = await new AccessTeam().start();
    const launcher = await new Launcher().start();
    const worker = await startWorker(deploymentVars({
      launcher, team,
      extra: { R2_BUCKET_NAME: bucket('edge-team'), MOLT_USERS: 'alice@example.com=alice, bob@example.com=bob' },
    }));
    const as = (email) => ({ 'cf-access-jwt-assertion': team.token(email) });
    try {
      const wsUrl = `${worker.url.replace('http', 'ws')}/`;
      const alice = await GatewayClient.connect(wsUrl, { headers: as('alice@example.com') });
      const said = finalText(await alice.chat('alice was here'));
      assert.match(said, /alice was here/);
      alice.close();
      const bob = await GatewayClient.connect(wsUrl, { headers: as('bob@example.com') });
      const history = await bob.request('chat.history', { sessionKey: 'main' });
      assert.ok(history.ok);
      assert.ok(!JSON.stringify(history.payload).includes('alice was here'), 'bob does not see alice\'s chat');
      bob.close();

      const statusOf = async (email, extra = {}) => (await (await fetch(`${worker.url}/api/status`, { headers: { ...as(email), ...extra } })).json());
      const [a, b] = [await statusOf('alice@example.com'), await statusOf('bob@example.com')];
      assert.notEqual(a.processId, b.processId, 'two gateways');
      // The Worker's internal headers, sent by a client, are dropped.
      const forged = await statusOf('bob@example.com', { 'x-molt-user': 'alice', 'x-molt-sandbox': 'status' });
      assert.equal(forged.processId, b.processId, 'bob cannot name alice\'s sandbox');
      assert.equal(launcher.container('alice').env.MOLT_BACKUP_PREFIX, 'users/alice');
      assert.equal(launcher.container('bob').env.MOLT_BACKUP_PREFIX, 'users/bob');

      const carol = await fetch(`${worker.url}/api/status`, { headers: as('carol@example.com') });
      assert.equal(carol.status, 403);
      assert.match((await carol.json()).message, /carol@example.com has no gateway here/);
    } finally {
      await worker.stop();
      await launcher.stop();
      await team.stop();
    }
  });
});

describe('a container that starts and sleeps', () => {
  test('the loading page while the container boots, then the Control UI', async () => {
    const team = await new AccessTeam().start();
    const launcher = await new Launcher({ bootDelayMs: 3000 }).start();
    const worker = await startWorker(deploymentVars({ launcher, team, extra: { R2_BUCKET_NAME: bucket('edge-boot') } }));
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const first = await page.goto(`${worker.url}/`);
      assert.equal(first.status(), 200);
      assert.equal(await page.title(), 'Starting your gateway…');
      await page.waitForFunction(() => document.title === 'Molt', null, { timeout: 30000 });
      assert.equal(launcher.container('moltbot').starts, 1);
    } finally {
      await browser.close();
      await worker.stop();
      await launcher.stop();
      await team.stop();
    }
  });

  test('an idle sandbox sleeps after SANDBOX_SLEEP_AFTER, backs up, and wakes with its state', async () => {
    const team = await new AccessTeam().start();
    const launcher = await new Launcher().start();
    const worker = await startWorker(deploymentVars({
      launcher, team, extra: { R2_BUCKET_NAME: bucket('edge-sleep'), SANDBOX_SLEEP_AFTER: '2s' },
    }));
    const wsUrl = `${worker.url.replace('http', 'ws')}/`;
    try {
      const client = await GatewayClient.connect(wsUrl);
      assert.match(finalText(await client.chat('remember the plum')), /remember the plum/);
      await sleep(3000);
      const container = launcher.container('moltbot');
      assert.ok(container.running, 'a connected client keeps it awake');
      client.close();
      await until('the idle sandbox sleeps', () => !container.running, 30000);
      assert.ok(container.signals.includes(15), 'the gateway was told to stop (SIGTERM)');
      assert.equal(container.exit.code, 0, `a clean stop: ${JSON.stringify(container.exit)}\n${container.logs}`);

      const woken = await GatewayClient.connect(wsUrl);
      try {
        assert.equal(container.starts, 2, 'woken by the next connection');
        const history = await woken.request('chat.history', { sessionKey: 'main' });
        assert.ok(JSON.stringify(history.payload).includes('remember the plum'), 'restored from the bucket');
      } finally {
        woken.close();
      }
    } finally {
      await worker.stop();
      await launcher.stop();
      await team.stop();
    }
  });
});
