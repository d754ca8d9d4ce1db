#!/usr/bin/env bash
# `wrangler deploy --dry-run`: everything a deploy does short of the account
# (the build, the bundle and its size, the bindings, the Durable Object and its
# migration, the container's settings). The container image is built too when
# a Docker engine runs here; without one (CI), the same configuration is
# checked with the image given as already pushed, the one line that differs.
set -euo pipefail
cd "$(dirname "$0")"
export WRANGLER_SEND_METRICS=false
mkdir -p target
if docker info >/dev/null 2>&1; then
  npx wrangler deploy --dry-run --outdir target/dry-run
else
  echo "no Docker engine: the image is taken as already pushed" >&2
  config=.wrangler-dry-run.jsonc
  sed 's|"image": "./Dockerfile"|"image": "registry.cloudflare.com/dry-run/molt-gateway:dry-run"|' wrangler.jsonc > "$config"
  grep -q 'registry.cloudflare.com/dry-run' "$config" || { echo "wrangler.jsonc has no \"image\": \"./Dockerfile\" line" >&2; exit 1; }
  trap 'rm -f "$config"' EXIT
  npx wrangler deploy --dry-run --config "$config" --outdir target/dry-run
fi
