// The Playwright side of molt-browser's benchmark (molt-browser/benches/browser.rs):
// the same work on the same Chromium binary, printed as one JSON line.
// Usage: node bench-playwright.mjs <chromium> <base-url> <pages> <screenshots> <page-loads>
import { chromium } from 'playwright-core';

const [executablePath, base, pageCount, shots, loads] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
await page.goto(`${base}/page/0`);
for (let i = 0; i < 3; i++) await page.screenshot();
const shotMs = [];
for (let i = 0; i < Number(shots); i++) {
  const start = performance.now();
  await page.screenshot();
  shotMs.push(performance.now() - start);
}
const started = performance.now();
for (let i = 0; i < Number(loads); i++) {
  await page.goto(`${base}/page/${i % Number(pageCount)}`, { waitUntil: 'load' });
  await page.content();
}
const seconds = (performance.now() - started) / 1000;
await browser.close();
console.log(JSON.stringify({ screenshot_ms: shotMs, pages_per_minute: (Number(loads) / seconds) * 60 }));
