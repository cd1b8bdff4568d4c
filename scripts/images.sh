#!/usr/bin/env bash
# Builds the project's container images locally; nothing is pulled from a registry.
#   gossipctl/gossipd:dev      the agent: a static gossipd FROM scratch (Dockerfile)
#   gossipctl/busybox:local    Debian's static busybox FROM scratch (examples/images/busybox.Dockerfile)
# Needs Docker and Debian's busybox-static package (or BUSYBOX=/path/to/a/static/busybox).
# The agent is built in release mode into target/image, apart from the regular build.
set -euo pipefail
cd "$(dirname "$0")/.."

busybox="${BUSYBOX:-/bin/busybox}"
if ! [ -x "$busybox" ] || ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  echo "images: $busybox is not a static busybox; install Debian's busybox-static or set BUSYBOX" >&2
  exit 1
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
# A static C runtime: the image has no libc. Passing --target keeps RUSTFLAGS off build scripts.
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked -p agent --bin gossipd --target "$host" --target-dir target/image

context=target/image/context
rm -rf "$context"
mkdir -p "$context"
cp "target/image/$host/release/gossipd" "$context/gossipd"
cp "$busybox" "$context/busybox"
docker build --quiet --tag gossipctl/gossipd:dev --file Dockerfile "$context" >/dev/null
docker build --quiet --tag gossipctl/busybox:local --file examples/images/busybox.Dockerfile "$context" >/dev/null
echo "built gossipctl/gossipd:dev and gossipctl/busybox:local"
