#!/usr/bin/env bash
# Runs hark on a recording (default: the bundled sample) and prints each utterance as a JSON
# line. With DEEPGRAM_API_KEY set it talks to Deepgram; without it, it starts the bundled
# Deepgram emulator (cmd/dgemu) on a free local port and uses that, so no account is needed.
#
#   scripts/demo.sh [FILE.wav]          (make run does the same after building)
set -euo pipefail
cd "$(dirname "$0")/.."
input=${1:-testdata/demo/sample.wav}
[ -x bin/hark ] && [ -x bin/dgemu ] || make -s build

export HARK_CAPTURE_INPUT="$input"
export HARK_MQTT_BROKER="${HARK_MQTT_BROKER:-}"
state=$(mktemp -d)
export HARK_STATE_DIR="$state"
cleanup() { [ -n "${emu_pid:-}" ] && kill "$emu_pid" 2>/dev/null; rm -rf "$state"; }
trap cleanup EXIT

if [ -n "${DEEPGRAM_API_KEY:-}" ]; then
  echo "demo: transcribing $input with Deepgram" >&2
  exec bin/hark run
fi

# What the emulator "hears": with FILE.json beside the recording (sentence positions and
# texts, like testdata/demo/sample.json) each utterance is recognised by its audio; else
# FILE.txt hands out one line per utterance in order; else it describes what it heard.
fixture_flag=()
if [ -f "${input%.wav}.json" ]; then
  fixture_flag=(--reference "$input")
elif [ -f "${input%.wav}.txt" ]; then
  fixture_flag=(--fixture "${input%.wav}.txt")
fi
# The emulator prints its URL on its first line of stdout once it is listening: read it
# from the pipe rather than guessing when it is ready.
exec 3< <(exec bin/dgemu --addr 127.0.0.1:0 --print-url "${fixture_flag[@]}" 2>"$state/dgemu.log")
emu_pid=$!
read -r url <&3 || { echo "demo: the emulator did not start:" >&2; cat "$state/dgemu.log" >&2; exit 1; }
echo "demo: no DEEPGRAM_API_KEY, so using the bundled Deepgram emulator at $url" >&2
echo "demo: streaming $input in real time; transcripts follow as JSON lines" >&2
HARK_DEEPGRAM_URL="$url" DEEPGRAM_API_KEY=emulator bin/hark run
