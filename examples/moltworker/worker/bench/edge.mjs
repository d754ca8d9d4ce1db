// What the Worker costs, measured in workerd on this machine beside the
// gateway it fronts (the release binary, started by the container launcher):
// the latency it adds to an HTTP request and to a WebSocket message (p50,
// p99, against the gateway directly, in the same run), and the cold path
// from a first connection to a streamed reply when the container must start
// and restore its state from the S3 server. Prints a table.
//
// Run by `cargo bench -p moltworker --bench edge`, which provides the S3
// server, the model fake and the binary (benches/edge.rs).

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { WebSocket } from 'ws';
import { AccessTeam, GatewayClient, Launcher, deploymentVars, sleep, startWorker, until } from '../tests/harness.mjs';

const HTTP_REQUESTS = Number(process.env.EDGE_BENCH_HTTP ?? 2000);
const WS_MESSAGES = Number(process.env.EDGE_BENCH_WS ?? 2000);
const COLD_STARTS = Number(process.env.EDGE_BENCH_COLD ?? 5);
const WARM_UP = 100;

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

const ms = (value) => `${value.toFixed(2)} ms`;

async function timeHttp(url) {
  const samples = [];
  for (let i = 0; i < WARM_UP + HTTP_REQUESTS; i++) {
    const started = performance.now();
    const response = await fetch(url, { headers: { accept: 'application/json' } });
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`${url}: ${response.status}`);
    if (i >= WARM_UP) samples.push(performance.now() - started);
  }
  return summary(samples);
}

/// Round trips of a small protocol request (`status`) over one connection.
async function timeWs(url) {
  const client = await GatewayClient.connect(url);
  const samples = [];
  for (let i = 0; i < WARM_UP + WS_MESSAGES; i++) {
    const started = performance.now();
    const response = await client.request('status');
    if (!response.ok) throw new Error(`status: ${JSON.stringify(response)}`);
    if (i >= WARM_UP) samples.push(performance.now() - started);
  }
  client.close();
  return summary(samples);
}

function bucket(name) {
  fs.mkdirSync(path.join(process.env.S3_ROOT, name), { recursive: true });
  return name;
}

const team = await new AccessTeam().start();
const rows = [];

// Through the Worker against direct, in one run, alternating to share the noise.
{
  const launcher = await new Launcher().start();
  const worker = await startWorker(deploymentVars({ launcher, team, extra: { R2_BUCKET_NAME: bucket('bench-latency') } }));
  const warm = await GatewayClient.connect(`${worker.url.replace('http', 'ws')}/`);
  warm.close();
  const direct = `http://127.0.0.1:${launcher.container('moltbot').port}`;
  const results = { httpWorker: [], httpDirect: [], wsWorker: [], wsDirect: [], httpEdgeOnly: [] };
  for (let round = 0; round < 3; round++) {
    // The runtime's own share: a route the Worker answers without the sandbox.
    results.httpEdgeOnly.push(await timeHttp(`${worker.url}/sandbox-health`));
    results.httpDirect.push(await timeHttp(`${direct}/`));
    results.httpWorker.push(await timeHttp(`${worker.url}/`));
    results.wsDirect.push(await timeWs(`${direct.replace('http', 'ws')}/`));
    results.wsWorker.push(await timeWs(`${worker.url.replace('http', 'ws')}/`));
  }
  const spread = (list, key) => `${ms(Math.min(...list.map((r) => r[key])))} – ${ms(Math.max(...list.map((r) => r[key])))}`;
  rows.push(['HTTP GET /sandbox-health, answered by the Worker alone, p50', spread(results.httpEdgeOnly, 'p50')]);
  for (const [label, through, direct_] of [['HTTP GET /', 'httpWorker', 'httpDirect'], ['WebSocket request', 'wsWorker', 'wsDirect']]) {
    rows.push([`${label}, p50 (worker / direct)`, `${spread(results[through], 'p50')} / ${spread(results[direct_], 'p50')}`]);
    rows.push([`${label}, p99 (worker / direct)`, `${spread(results[through], 'p99')} / ${spread(results[direct_], 'p99')}`]);
    const added = results[through].map((r, i) => r.p50 - results[direct_][i].p50);
    rows.push([`${label}, added at p50`, `${ms(Math.min(...added))} – ${ms(Math.max(...added))}`]);
  }
  await worker.stop();
  await launcher.stop();
}

// The cold path: a state in the bucket, a container that is not running; from
// the first connection to the first streamed delta of a reply.
{
  const name = bucket('bench-cold');
  const seed = await new Launcher().start();
  const seeding = await startWorker(deploymentVars({ launcher: seed, team, extra: { R2_BUCKET_NAME: name } }));
  const client = await GatewayClient.connect(`${seeding.url.replace('http', 'ws')}/`);
  for (let i = 0; i < 20; i++) await client.chat(`message ${i} of the state to restore`);
  client.close();
  const container = seed.container('moltbot');
  container.process.kill('SIGTERM');
  await until('the seeding gateway stops after its last backup', () => !container.running, 30000);
  await seeding.stop();
  await seed.stop();

  const hello = [];
  const firstDelta = [];
  for (let i = 0; i < COLD_STARTS; i++) {
    const launcher = await new Launcher().start();
    const worker = await startWorker(deploymentVars({ launcher, team, extra: { R2_BUCKET_NAME: name } }));
    const started = performance.now();
    const cold = await GatewayClient.connect(`${worker.url.replace('http', 'ws')}/`);
    hello.push(performance.now() - started);
    const runId = crypto.randomUUID();
    await cold.request('chat.send', { sessionKey: 'main', message: 'are you there?', idempotencyKey: runId });
    await cold.event('chat', (p) => p.runId === runId && p.state === 'delta');
    firstDelta.push(performance.now() - started);
    cold.close();
    await worker.stop();
    await launcher.stop();
    await sleep(200);
  }
  const range = (list) => `${ms(Math.min(...list))} – ${ms(Math.max(...list))} (median ${ms(summary(list).p50)})`;
  rows.push([`cold: first connection → hello-ok (${COLD_STARTS} starts)`, range(hello)]);
  rows.push([`cold: first connection → first streamed delta`, range(firstDelta)]);
}
await team.stop();

console.log('\n| through workerd on this machine | measured (spread of 3 rounds, or of the starts) |');
console.log('|---|---|');
for (const [what, value] of rows) console.log(`| ${what} | ${value} |`);
