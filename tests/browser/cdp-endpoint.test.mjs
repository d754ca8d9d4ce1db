// Playwright connects to the real moltworker binary's /cdp endpoint, which
// relays CDP to the Chromium moltworker launched, and takes a screenshot of a
// local page; a wrong secret is refused; Chromium ends with the gateway.
//
// Needs MOLTWORKER_BIN (the built binary) and Chromium at CHROMIUM_PATH or /usr/bin/chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { chromium } from 'playwright-core';

const BIN = process.env.MOLTWORKER_BIN;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SECRET = 'cdp-test-secret';
let gateway, stateDir, site, siteUrl, host;

/** Process ids whose command line mentions Molt's temporary Chromium profiles. */
function moltChromiums() {
  const found = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('molt-chromium-')) found.push(pid);
    } catch { /* the process ended */ }
  }
  return found;
}

before(async () => {
  assert.ok(BIN, 'set MOLTWORKER_BIN to the moltworker binary');
  site = createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end('<!doctype html><title>Through the relay</title><body style="margin:0;background:#0a0">Hello</body>');
  });
  site.listen(0, '127.0.0.1');
  await once(site, 'listening');
  siteUrl = `http://127.0.0.1:${site.address().port}/`;

  stateDir = mkdtempSync(join(tmpdir(), 'molt-cdp-'));
  gateway = spawn(BIN, [], {
    env: {
      ...process.env, MOLT_STATE_DIR: stateDir, MOLT_BIND: '127.0.0.1:0', RUST_LOG: 'warn',
      MOLTBOT_GATEWAY_TOKEN: '', CDP_SECRET: SECRET, MOLT_BROWSER: CHROMIUM,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const firstLine = await new Promise((resolve, reject) => {
    createInterface({ input: gateway.stdout }).once('line', resolve);
    gateway.once('exit', (code) => reject(new Error(`moltworker exited with ${code}`)));
  });
  host = new URL(firstLine.replace(/^Control UI: /, '')).host;
});

after(async () => {
  if (gateway && gateway.exitCode === null) gateway.kill('SIGTERM');
  site?.close();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

test('Playwright connects through /cdp with the secret and takes a screenshot', async () => {
  const browser = await chromium.connectOverCDP(`ws://${host}/cdp?secret=${SECRET}`);
  try {
    const context = browser.contexts()[0] ?? await browser.newContext();
    const page = await context.newPage();
    await page.setViewportSize({ width: 320, height: 200 });
    await page.goto(siteUrl);
    assert.equal(await page.title(), 'Through the relay');
    const png = await page.screenshot();
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
    assert.equal(png.readUInt32BE(16), 320, 'width');
    assert.equal(png.readUInt32BE(20), 200, 'height');
    await page.close();
  } finally {
    await browser.close();
  }
});

test('Playwright discovers the endpoint over HTTP with the secret in a header', async () => {
  const headers = { Authorization: `Bearer ${SECRET}` };
  const browser = await chromium.connectOverCDP(`http://${host}/cdp`, { headers });
  try {
    const page = await (browser.contexts()[0] ?? await browser.newContext()).newPage();
    await page.goto(siteUrl);
    assert.equal(await page.locator('body').innerText(), 'Hello');
    await page.close();
  } finally {
    await browser.close();
  }
});

test('a wrong secret is refused', async () => {
  await assert.rejects(chromium.connectOverCDP(`ws://${host}/cdp?secret=wrong`, { timeout: 10000 }), /401/);
  const response = await fetch(`http://${host}/cdp/json/version?secret=wrong`);
  assert.equal(response.status, 401);
  const missing = await fetch(`http://${host}/cdp/json/list`);
  assert.equal(missing.status, 401);
});

test('Chromium ends when the gateway stops', async () => {
  assert.ok(moltChromiums().length > 0, 'moltworker launched Chromium for the endpoint');
  gateway.kill('SIGTERM');
  await once(gateway, 'exit');
  assert.deepEqual(moltChromiums(), []);
});
