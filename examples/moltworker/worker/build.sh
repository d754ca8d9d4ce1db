#!/usr/bin/env bash
# Builds the Worker (build/index.js + build/index_bg.wasm) without downloading
# prebuilt binaries: wasm-bindgen comes from crates.io at the version the lock
# file pins, esbuild from npm (wrangler's own, which `npm ci` installs), and
# wasm-opt is skipped.
set -euo pipefail
cd "$(dirname "$0")"

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | cut -d' ' -f2)" != "$bindgen_version" ]; then
  cargo install --quiet wasm-bindgen-cli --version "$bindgen_version" --no-default-features --bin wasm-bindgen
fi
command -v worker-build >/dev/null || cargo install --quiet worker-build --version 0.8.7
# wrangler's own esbuild, whatever the platform (`npm ci` installs it).
esbuild="$PWD/node_modules/.bin/esbuild"
[ -x "$esbuild" ] || { echo "build.sh: run \`npm ci\` in $PWD first" >&2; exit 1; }

WASM_BINDGEN_BIN="$(command -v wasm-bindgen)" ESBUILD_BIN="$esbuild" \
  worker-build --release --no-opt
