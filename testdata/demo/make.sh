#!/usr/bin/env bash
# Regenerates sample.wav from sample.txt: each line spoken by espeak-ng (voice en-us,
# 150 words per minute), resampled to 16 kHz mono signed 16-bit, 0.5 s of silence first,
# 1.5 s of silence between sentences and 1 s at the end. sample.json (the measured sentence
# positions, measured by the emulator's own segmenter) is then rewritten from the repository root
# with `go test ./dgemu -run TestDemoSample -update`.
# Needs espeak-ng and sox (scripts/install-test-deps.sh installs both). Output differs
# slightly between espeak-ng versions; the committed file is the reference.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sox -n -r 16000 -c 1 -b 16 -e signed-integer "$tmp/lead.wav" trim 0 0.5
sox -n -r 16000 -c 1 -b 16 -e signed-integer "$tmp/gap.wav" trim 0 1.5
sox -n -r 16000 -c 1 -b 16 -e signed-integer "$tmp/tail.wav" trim 0 1.0
parts=("$tmp/lead.wav")
i=0
while IFS= read -r line; do
  [ -n "$line" ] || continue
  [ $i -eq 0 ] || parts+=("$tmp/gap.wav")
  espeak-ng -v en-us -s 150 -w "$tmp/raw$i.wav" "$line"
  # Trim espeak's own leading/trailing silence so the gaps are exactly what we add.
  sox "$tmp/raw$i.wav" -r 16000 -c 1 -b 16 -e signed-integer "$tmp/s$i.wav" \
    silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse
  parts+=("$tmp/s$i.wav")
  i=$((i+1))
done < sample.txt
parts+=("$tmp/tail.wav")
sox "${parts[@]}" -r 16000 -c 1 -b 16 -e signed-integer sample.wav
echo "sample.wav: $(soxi -D sample.wav) s, $(stat -c %s sample.wav) bytes"
