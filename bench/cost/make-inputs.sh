#!/usr/bin/env bash
# make-inputs.sh DIR: the cost benchmark's inputs, generated reproducibly (sox -R) with
# espeak-ng and sox (scripts/install-test-deps.sh installs both):
#   noise.wav   60 s of quiet room noise: pink noise at about -62 dBFS RMS, no speech;
#   speech.wav  the ten sentences of sentences.txt (espeak-ng en-us, 150 wpm), 2 s of the
#               same room noise first, about 4.5 s between sentences, 2 s at the end, all over
#               the noise bed (about 80 s);
#   speech.txt  the emulator's fixture (one sentence a line, in order);
#   noise.raw   70 s of the same noise as raw s16le, for playing into PulseAudio.
# Files already there are kept (delete DIR to regenerate).
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
cd "$out"
[ -f speech.txt ] || cp "$here/sentences.txt" speech.txt
fmt=(-r 16000 -c 1 -b 16 -e signed-integer)
noise() { sox -R -n "${fmt[@]}" "$1" synth "$2" pinknoise vol 0.004; }
[ -f noise.wav ] || noise noise.wav 60
[ -f noise.raw ] || { noise noise70.wav 70; sox noise70.wav -t raw noise.raw; rm noise70.wav; }
if [ ! -f speech.wav ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  sox -n "${fmt[@]}" "$tmp/lead.wav" trim 0 2
  sox -n "${fmt[@]}" "$tmp/gap.wav" trim 0 4.5
  parts=("$tmp/lead.wav")
  i=0
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    [ $i -eq 0 ] || parts+=("$tmp/gap.wav")
    espeak-ng -v en-us -s 150 -w "$tmp/raw$i.wav" "$line"
    # espeak's own leading and trailing silence trimmed: the gaps are exactly ours.
    sox "$tmp/raw$i.wav" "${fmt[@]}" "$tmp/s$i.wav" silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse
    parts+=("$tmp/s$i.wav")
    i=$((i+1))
  done < speech.txt
  parts+=("$tmp/lead.wav")
  sox "${parts[@]}" "${fmt[@]}" "$tmp/voice.wav"
  noise "$tmp/bed.wav" "$(soxi -D "$tmp/voice.wav")"
  sox -m -v 1 "$tmp/voice.wav" -v 1 "$tmp/bed.wav" "${fmt[@]}" speech.wav
fi
echo "inputs in $out: noise.wav $(soxi -D noise.wav) s, speech.wav $(soxi -D speech.wav) s"
