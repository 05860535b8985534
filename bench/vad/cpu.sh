#!/usr/bin/env bash
# cpu.sh HARK SETDIR: runs `HARK vad FILE --csv` over every WAV of an evaluation set and
# prints the CPU time (user+sys of the child processes, from /proc/self/stat, so process
# start-up is included) per second of audio. See docs/bench-vad.md.
set -euo pipefail
hark=$1 set=$2
for f in "$set"/wav/*.wav; do "$hark" vad "$f" --csv >/dev/null; done
read -r cu cs < <(awk '{print $16, $17}' /proc/$$/stat)
tck=$(getconf CLK_TCK)
audio=$(awk -F, 'NR>1 {s += $5} END {print s}' "$set/manifest.csv")
files=$(ls "$set"/wav/*.wav | wc -l)
awk -v c=$((cu + cs)) -v t="$tck" -v a="$audio" -v n="$files" \
  'BEGIN {printf "%d files, %.1f s of audio, %.2f s CPU (user+sys) -> %.1f us CPU per audio second\n", n, a, c/t, c/t/a*1e6}'
