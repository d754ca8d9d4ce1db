// Playwright connects to the real moltworker binary's /cdp endpoint, which
// relays CDP to the Chromium moltworker launched, and takes a screenshot of a
// local page; a wrong secret is refused; what a client reaches obeys the
// egress policy (no local files, no metadata address, not the gateway itself,
// whatever context, target or page asks), downloads never land, the browser
// holds none of the gateway's secrets; Chromium ends with the gateway.
//
// Needs MOLTWORKER_BIN (the built binary) and Chromium at CHROMIUM_PATH or /usr/bin/chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

const BIN = process.env.MOLTWORKER_BIN;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SECRET = 'cdp-test-secret';
const GATEWAY_TOKEN = 'gateway-token-sentinel';
const PROVIDER_KEY = 'sk-provider-key-sentinel';
let gateway, stateDir, site, siteUrl, host, sink, sinkUrl;
/** Requests the denied sink received, by path. */
const sinkHits = [];

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
  // The public test page lives on 127.0.0.2 (allowed below); a sink on
  // 127.0.0.3 stands for everything private the policy denies.
  sink = createServer((req, res) => { sinkHits.push(req.url); res.end('sink'); });
  sink.listen(0, '127.0.0.3');
  await once(sink, 'listening');
  sinkUrl = `http://127.0.0.3:${sink.address().port}`;
  site = createServer((req, res) => {
    if (req.url === '/file.bin') {
      res.setHeader('content-type', 'application/octet-stream');
      res.setHeader('content-disposition', 'attachment; filename="planted.bin"');
      return res.end('downloaded bytes');
    }
    res.setHeader('content-type', 'text/html');
    res.end('<!doctype html><title>Through the relay</title><body style="margin:0;background:#0a0"><p>Hello</p>' +
      '<a id="dl" href="/file.bin" download>file</a></body>');
  });
  site.listen(0, '127.0.0.2');
  await once(site, 'listening');
  siteUrl = `http://127.0.0.2:${site.address().port}/`;

  stateDir = mkdtempSync(join(tmpdir(), 'molt-cdp-'));
  gateway = spawn(BIN, [], {
    env: {
      ...process.env, MOLT_STATE_DIR: stateDir, MOLT_BIND: '127.0.0.1:0', RUST_LOG: 'warn',
      MOLTBOT_GATEWAY_TOKEN: GATEWAY_TOKEN, CDP_SECRET: SECRET, MOLT_BROWSER: CHROMIUM,
      OPENAI_API_KEY: PROVIDER_KEY, MOLT_EGRESS_ALLOW_NETWORKS: '127.0.0.2/32',
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
  sink?.close();
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
    assert.equal(await page.locator('p').innerText(), 'Hello');
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

/** Asserts that `page` cannot open `url` (the relay or the proxy refuses it). */
async function refused(page, url) {
  let response = null;
  try {
    response = await page.goto(url, { timeout: 10000 });
  } catch (error) {
    return error.message;
  }
  assert.fail(`${url} opened with status ${response?.status()}: ${await page.content()}`);
}

test('what a /cdp client reaches obeys the egress policy, in any context or target', async () => {
  const browser = await chromium.connectOverCDP(`ws://${host}/cdp?secret=${SECRET}`);
  try {
    const gatewayHealth = `http://${host}/health`;
    for (const context of [browser.contexts()[0], await browser.newContext()]) {
      const page = await context.newPage();
      assert.match(await refused(page, 'file:///etc/hostname'), /only http\(s\)/);
      assert.match(await refused(page, 'http://169.254.169.254/latest/meta-data/'), /egress policy/);
      assert.match(await refused(page, gatewayHealth), /egress policy/);
      assert.match(await refused(page, `${sinkUrl}/navigated`), /egress policy/);
      // The public page still works, and what it loads is policed too.
      await page.goto(siteUrl);
      assert.equal(await page.title(), 'Through the relay');
      const fetched = await page.evaluate(async (sink) => {
        const results = [];
        for (const url of [`${sink}/fetch`, `${location.origin}/fetched`]) {
          try { results.push((await fetch(url, { mode: 'no-cors' })).type); } catch { results.push('blocked'); }
        }
        const frame = document.createElement('iframe');
        frame.src = `${sink}/frame`;
        document.body.append(frame);
        window.open(`${sink}/popup`);
        new Worker(URL.createObjectURL(new Blob([`fetch('${sink}/worker')`])));
        return results;
      }, sinkUrl);
      assert.equal(fetched[1], 'basic', 'the allowed origin is reached');
      await page.waitForTimeout(1000);
      await page.close();
    }
    // Raw CDP: a target without a context, a method outside the pages.
    const cdp = await browser.newBrowserCDPSession();
    await assert.rejects(cdp.send('Target.createTarget', { url: 'file:///etc/hostname' }), /only http\(s\)/);
    await assert.rejects(cdp.send('Target.createTarget', { url: `${sinkUrl}/target` }), /egress policy/);
    await assert.rejects(cdp.send('SystemInfo.getProcessInfo'), /not available through Molt's \/cdp/);
    await assert.rejects(cdp.send('Target.exposeDevToolsProtocol', { targetId: 'x' }), /not available/);
    // A drop carrying a file of the browser's host.
    const page = await browser.contexts()[0].newPage();
    const session = await page.context().newCDPSession(page);
    await assert.rejects(session.send('Input.dispatchDragEvent', {
      type: 'drop', x: 10, y: 10, data: { items: [], files: ['/etc/hostname'], dragOperationsMask: 1 },
    }), /no files/);
    await page.close();
    assert.deepEqual(sinkHits, [], 'nothing reached the denied address');
  } finally {
    await browser.close();
  }
});

test('a /cdp client cannot make the browser save a download', async () => {
  const browser = await chromium.connectOverCDP(`ws://${host}/cdp?secret=${SECRET}`);
  try {
    const cdp = await browser.newBrowserCDPSession();
    // Asked to save into the gateway's state directory: answered, but denied.
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: stateDir });
    const page = await (browser.contexts()[0] ?? await browser.newContext()).newPage();
    await page.goto(siteUrl);
    await page.click('#dl');
    await page.waitForTimeout(1500);
    assert.equal(existsSync(join(stateDir, 'planted.bin')), false, 'no download in the state directory');
    await page.close();
  } finally {
    await browser.close();
  }
});

test('Puppeteer connects through /cdp and stays inside the same policy', async () => {
  const browser = await puppeteer.connect({ browserWSEndpoint: `ws://${host}/cdp?secret=${SECRET}` });
  try {
    const page = await browser.newPage();
    await page.goto(siteUrl);
    assert.equal(await page.title(), 'Through the relay');
    await assert.rejects(page.goto('file:///etc/hostname'), /only http\(s\)/);
    await assert.rejects(page.goto(`${sinkUrl}/puppeteer`), /egress policy/);
    const context = await browser.createBrowserContext({ proxyServer: 'direct://' });
    const isolated = await context.newPage();
    await isolated.goto(siteUrl);
    // A proxy of the client's choosing ("direct") is not used: the sink stays unreached.
    await isolated.evaluate((sink) => fetch(`${sink}/puppeteer-fetch`, { mode: 'no-cors' }).catch(() => {}), sinkUrl);
    await context.close();
    await page.close();
    assert.deepEqual(sinkHits, [], 'nothing reached the denied address');
  } finally {
    // Puppeteer's close() asks the browser to close; the relay refuses, and
    // the shared browser stays up for the next client.
    await browser.close();
  }
  const again = await puppeteer.connect({ browserWSEndpoint: `ws://${host}/cdp?secret=${SECRET}` });
  assert.ok((await again.version()).includes('Chrome'));
  await again.disconnect();
});

test("the browser's processes hold none of the gateway's secrets", () => {
  const pids = moltChromiums();
  assert.ok(pids.length > 0, 'a Chromium is running');
  let read = 0;
  for (const pid of pids) {
    let environ;
    try { environ = readFileSync(`/proc/${pid}/environ`, 'utf8'); } catch { continue; }
    // Zygote-forked children write their titles over this area; the
    // browser's own process shows its environment whole.
    if (/(^|\0)HOME=/.test(environ)) read += 1;
    for (const secret of [SECRET, GATEWAY_TOKEN, PROVIDER_KEY, 'MOLTBOT_GATEWAY_TOKEN', 'CDP_SECRET', 'OPENAI_API_KEY']) {
      assert.ok(!environ.includes(secret), `Chromium ${pid} has ${secret} in its environment`);
    }
  }
  assert.ok(read > 0, 'at least one Chromium environment was read whole');
});

test('Chromium ends when the gateway stops', async () => {
  assert.ok(moltChromiums().length > 0, 'moltworker launched Chromium for the endpoint');
  gateway.kill('SIGTERM');
  await once(gateway, 'exit');
  assert.deepEqual(moltChromiums(), []);
});
