#!/usr/bin/env bash
# Installs what the test suite needs on a machine that has only Go, gcc, git and apt:
# a real MQTT broker, an audio server for the capture test, and the audio tools used to
# make and check test recordings. Idempotent: it installs only what is missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have mosquitto || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
have pulseaudio || need+=(pulseaudio)
have pactl || need+=(pulseaudio-utils)
have espeak-ng || need+=(espeak-ng)
have sox || need+=(sox)
have lame || need+=(lame)            # MP3 test files (hark transcribe)
have opusenc || need+=(opus-tools)   # Ogg/Opus test files; M4A/WebM/AAC ones only where ffmpeg is installed
have systemd-analyze || need+=(systemd)
have aarch64-linux-gnu-gcc || need+=(gcc-aarch64-linux-gnu)
have arm-linux-gnueabihf-gcc || need+=(gcc-arm-linux-gnueabihf)
have qemu-aarch64-static || need+=(qemu-user-static)
have deb-systemd-helper || need+=(init-system-helpers)
have adduser || need+=(adduser)
have unshare || need+=(util-linux)
# Node.js and npm run the official JS SDK against the emulator (make test-sdk). Only when
# node is missing: where Node comes from elsewhere, Debian's npm conflicts with it.
have node || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
