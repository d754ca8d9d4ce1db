// The operator's page at /_admin/ in real headless Chromium, driven by the
// Rust test examples/moltworker/tests/admin_ui.rs (which runs the gateway,
// an S3 server that checks SigV4 and the strict Telegram fake, and checks
// what this leaves behind). In order:
//   1. the Control UI (a new device) waits to be approved;
//   2. the operator signs in to /_admin/ with the token and approves it there;
//   3. the Control UI connects by itself and chats;
//   4. "Backup now" updates the last-backup time;
//   5. the Telegram stranger's pairing code is approved in the page.
//
// Needs BASE_URL (http://host:port/), GATEWAY_TOKEN, and Chromium at CHROMIUM_PATH or /usr/bin/chromium.
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const BASE = process.env.BASE_URL;
const TOKEN = process.env.GATEWAY_TOKEN;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = { timeout: 20000 };
assert.ok(BASE && TOKEN, 'set BASE_URL and GATEWAY_TOKEN');

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext();
  const chat = await context.newPage();
  chat.on('pageerror', (err) => console.error('control ui:', err));

  // 1. A browser that was never approved waits, and says where to approve it.
  await chat.goto(`${BASE}?token=${TOKEN}`);
  await chat.getByTestId('status').filter({ hasText: 'waiting for approval' }).waitFor(WAIT);
  assert.match(await chat.getByTestId('pairing-notice').innerText(), /approve it on the admin page/);

  // 2. Without the token the admin page is a sign-in page; with it, the page.
  const admin = await context.newPage();
  admin.on('pageerror', (err) => console.error('admin:', err));
  const refused = await admin.goto(`${BASE}_admin/`);
  assert.equal(refused.status(), 401);
  await admin.getByTestId('sign-in-token').fill(TOKEN);
  await admin.getByTestId('sign-in').click();
  await admin.waitForURL(`${BASE}_admin/`);
  assert.ok(!admin.url().includes(TOKEN), 'the token is not left in the address');
  const pending = admin.getByTestId('pending-device');
  await pending.first().waitFor(WAIT);
  assert.equal(await pending.count(), 1);
  assert.match(await pending.first().innerText(), /openclaw-control-ui/);
  await pending.first().getByTestId('approve-device').click();
  await admin.getByTestId('paired-device').first().waitFor(WAIT);

  // 3. The Control UI was retrying: it is in now, as a paired device, and chats.
  await chat.getByTestId('status').filter({ hasText: /^connected$/ }).waitFor(WAIT);
  assert.ok(!chat.url().includes(TOKEN));
  await chat.getByTestId('message-input').fill('hello from a paired browser');
  await chat.getByTestId('send-button').click();
  const reply = chat.locator('[data-testid="message"][data-role="assistant"][data-state="final"]').last();
  await reply.waitFor(WAIT);
  assert.match(await reply.innerText(), /echo: hello from a paired browser/);
  // A reload comes back with the device token, straight in.
  await chat.reload();
  await chat.getByTestId('status').filter({ hasText: /^connected$/ }).waitFor(WAIT);

  // 4. Backup now: the last-backup time changes to a time the page shows.
  const lastBackup = admin.getByTestId('last-backup');
  await admin.getByTestId('backup-now').waitFor(WAIT);
  const before = await lastBackup.innerText();
  await admin.waitForFunction(() => !document.querySelector('[data-testid="backup-now"]').disabled, null, WAIT);
  await admin.getByTestId('backup-now').click();
  await admin.waitForFunction((old) => {
    const text = document.querySelector('[data-testid="last-backup"]').textContent;
    return text !== old && text !== 'never';
  }, before, WAIT);
  assert.match(await admin.getByTestId('notice').innerText(), /Sync completed/);

  // 5. The Telegram stranger's code is in the page: approve it.
  const request = admin.getByTestId('pairing-request');
  await request.first().waitFor(WAIT);
  assert.match(await request.first().innerText(), /telegram/);
  await request.first().getByTestId('approve-code').click();
  await admin.getByTestId('notice').filter({ hasText: /may now talk to the assistant on telegram/ }).waitFor(WAIT);
  await admin.locator('[data-testid="pairing-request"]').waitFor({ state: 'detached', ...WAIT });

  // The channel status lists Telegram as connected.
  await admin.getByTestId('channels').filter({ hasText: /telegram\s*connected/ }).waitFor(WAIT);
  console.log('admin ui: all steps passed');
} finally {
  await browser.close();
}
