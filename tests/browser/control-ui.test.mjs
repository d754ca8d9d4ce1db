// The Control UI in real headless Chromium against the real moltworker binary:
// a chat gets a streamed reply, a wrong token is refused with a clear reason,
// and history is there after a reload.
//
// Needs MOLTWORKER_BIN (the built binary) and Chromium at CHROMIUM_PATH or /usr/bin/chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const BIN = process.env.MOLTWORKER_BIN;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
let gateway, stateDir, browser, baseUrl, token;

before(async () => {
  assert.ok(BIN, 'set MOLTWORKER_BIN to the moltworker binary');
  stateDir = mkdtempSync(join(tmpdir(), 'molt-ui-'));
  gateway = spawn(BIN, [], {
    env: { ...process.env, MOLT_STATE_DIR: stateDir, MOLT_BIND: '127.0.0.1:0', RUST_LOG: 'warn', MOLTBOT_GATEWAY_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // The first stdout line is the Control UI URL with the generated token.
  const firstLine = await new Promise((resolve, reject) => {
    createInterface({ input: gateway.stdout }).once('line', resolve);
    gateway.once('exit', (code) => reject(new Error(`moltworker exited with ${code}`)));
  });
  const url = new URL(firstLine.replace(/^Control UI: /, ''));
  token = url.searchParams.get('token');
  baseUrl = `${url.protocol}//${url.host}/`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  gateway?.kill('SIGTERM');
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

// Approves every device waiting, as an operator does through the admin API.
async function approveWaitingDevices() {
  const response = await fetch(`${baseUrl}api/admin/devices/approve-all`, {
    method: 'POST', headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(response.status, 200);
  return response.json();
}

test('a chat in the browser gets a streamed reply', async () => {
  const page = await browser.newPage();
  await page.goto(`${baseUrl}?token=${token}`);
  // The browser is a device like any other: it waits until an operator approves it.
  await page.getByTestId('status').filter({ hasText: 'waiting for approval' }).waitFor({ timeout: 15000 });
  assert.equal((await approveWaitingDevices()).approved.length, 1);
  await page.getByTestId('status').filter({ hasText: /^connected/ }).waitFor({ timeout: 15000 });
  assert.ok(!page.url().includes(token), 'the token is removed from the address bar');
  assert.match(await page.getByTestId('model-banner').innerText(), /echo/i);

  // Record every text the assistant bubble shows while the reply streams in.
  await page.evaluate(() => {
    window.seenTexts = [];
    new MutationObserver(() => {
      for (const el of document.querySelectorAll('[data-testid="message"][data-role="assistant"]')) {
        window.seenTexts.push(`${el.dataset.state}:${el.innerText}`);
      }
    }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
  const sentence = 'the quick brown fox jumps over the lazy dog';
  await page.getByTestId('message-input').fill(sentence);
  await page.getByTestId('send-button').click();
  const reply = page.locator('[data-testid="message"][data-role="assistant"][data-state="final"]').last();
  await reply.waitFor({ timeout: 15000 });
  assert.match(await reply.innerText(), new RegExp(`echo: ${sentence}`));
  const seen = await page.evaluate(() => window.seenTexts);
  assert.ok(seen.some((t) => t.startsWith('streaming:')), `the reply streamed before it was final: ${seen.slice(0, 5)}`);

  // A tool call shows while the run goes on.
  await page.getByTestId('message-input').fill('/tool ls {}');
  await page.getByTestId('send-button').click();
  await page.getByTestId('tool-call').filter({ hasText: 'ls' }).first().waitFor({ timeout: 15000 });
  assert.match(await page.getByTestId('sessions').innerText(), /Control UI/);

  // After a reload the conversation comes back from chat.history.
  await page.reload();
  await page.getByTestId('status').filter({ hasText: /^connected/ }).waitFor({ timeout: 15000 });
  await page.locator('[data-testid="message"][data-role="user"]', { hasText: sentence }).waitFor({ timeout: 15000 });
  await page.screenshot({ path: join(stateDir, 'control-ui.png') });
  await page.close();
});

test('a wrong token is refused with a clear reason', async () => {
  const page = await browser.newPage();
  await page.goto(`${baseUrl}?token=not-the-token`);
  await page.getByTestId('token-input').waitFor({ state: 'visible', timeout: 15000 });
  const body = await page.locator('body').innerText();
  assert.match(body, /gateway token mismatch/);
  await page.close();
});
