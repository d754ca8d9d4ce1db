// Serves the Worker in workerd for a test written in Rust: an Access team, a
// container launcher (the real gateway binary) and the Worker, its
// WORKER_URL its own address. Prints one JSON line ({url}) once it serves,
// and stops everything when its stdin closes or it is told to stop.
//
// Environment: MOLTWORKER_BIN, EDGE_VARS (JSON: more Worker variables),
// BOOT_DELAY_MS (how long a container takes to boot), and those
// deploymentVars passes on (model, S3).

import { AccessTeam, Launcher, deploymentVars, freePort, startWorker } from './harness.mjs';

const team = await new AccessTeam().start();
const launcher = await new Launcher({ bootDelayMs: Number(process.env.BOOT_DELAY_MS ?? 0) }).start();
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const extra = { ...JSON.parse(process.env.EDGE_VARS ?? '{}'), WORKER_URL: url };
const worker = await startWorker(deploymentVars({ launcher, team, extra }), { port });
console.log(JSON.stringify({ url }));

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await worker.stop();
  await launcher.stop();
  await team.stop();
  process.exit(0);
}
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
