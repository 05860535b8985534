#!/usr/bin/env bash
# Installs what `make test` and `.ci/run` need on a machine that has only Go, gcc, git and
# apt (Debian bookworm or later): make, the C library headers cgo builds against, CA
# certificates for the Go module proxy, a real MQTT broker, an audio server for the capture
# test, the audio tools used to make and check test recordings, the arm64/armhf cross
# compilers with their target C libraries and headers, qemu-user for running the arm builds,
# and the tools the packaging checks use. Idempotent: it installs only what is missing, so
# the second run costs a few dpkg queries. `make ci-fresh` proves it on a fresh root.
#
# node and npm come from apt only when node is missing (Debian's npm package conflicts with
# a Node installed from elsewhere).
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have_pkg() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
# cmd COMMAND PACKAGE: the package, unless the command is already there from anywhere.
cmd() { have_cmd "$1" || need+=("$2"); }
# pkg PACKAGE...: packages that provide no command to look for (headers, libraries, certs).
pkg() { local p; for p in "$@"; do have_pkg "$p" || need+=("$p"); done; }

# Build: make runs the targets; cgo needs libc headers (gcc alone does not pull them in);
# the Go module proxy is HTTPS.
cmd make make
pkg libc6-dev ca-certificates
# Tests: a real broker (mosquitto_passwd comes with it), PulseAudio for the capture test,
# espeak-ng and sox to make and measure test speech.
cmd mosquitto mosquitto
# The clustered-broker test: Aedes nodes (npm, below) share their state through Redis.
cmd redis-server redis-server
cmd pulseaudio pulseaudio
cmd pactl pulseaudio-utils
cmd espeak-ng espeak-ng
cmd sox sox
# Compressed test files for hark transcribe: MP3 and Ogg/Opus (M4A/WebM/AAC ones only
# where ffmpeg is installed).
cmd lame lame
cmd opusenc opus-tools
# Packaging and unit checks.
cmd systemd-analyze systemd
cmd deb-systemd-helper init-system-helpers
cmd adduser adduser
cmd unshare util-linux
cmd readelf binutils
# The unit's ExecReload= runs /bin/kill (procps; not in a minimal Debian), and
# systemd-analyze verify checks that it exists.
[ -x /bin/kill ] || need+=(procps)
# Cross builds (make cross-check): the compilers, and the target C libraries' headers,
# which the compilers only recommend (and --no-install-recommends leaves out); qemu-user
# runs the arm builds.
cmd aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
cmd arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf
pkg libc6-dev-arm64-cross libc6-dev-armhf-cross
cmd qemu-aarch64-static qemu-user-static

# Node.js and npm run the official JS SDK against the emulator (make test-sdk) and the
# Aedes cluster broker: only when node is missing, since where Node comes from elsewhere
# Debian's npm conflicts with it.
have_cmd node || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
	echo "install-test-deps: installing ${need[*]}"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Aedes cluster's node packages, pinned by test/aedes/package-lock.json; again only
# when the lock file changed since the last install.
aedes_dir="$(dirname "$0")/../test/aedes"
if ! cmp -s "$aedes_dir/package-lock.json" "$aedes_dir/node_modules/.hark-installed-lock"; then
	(cd "$aedes_dir" && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.hark-installed-lock)
fi
