#!/usr/bin/env bash
# cross-check.sh [DIST]: proves the arm builds work. DIST/{amd64,arm64,armhf}/hark (built by
# `make cross`) each run `hark version` and `hark vad --csv` on the same WAV file, the arm
# ones under qemu-user; every CSV must be byte-identical to the amd64 build's, because the
# gate's decisions (what is sent to Deepgram) must not depend on the architecture.
#
# Needs qemu-user-static and the cross C libraries (libc6-arm64-cross, libc6-armhf-cross,
# pulled in by gcc-aarch64-linux-gnu and gcc-arm-linux-gnueabihf).
set -euo pipefail

dist=${1:-dist}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fail() { echo "cross-check: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

start=$(now)
for a in amd64 arm64 armhf; do
	[ -x "$dist/$a/hark" ] || fail "$dist/$a/hark missing (run make cross)"
done

# run ARCH ARGS...: runs that build, under qemu for the arm ones.
run() {
	local a=$1
	shift
	case "$a" in
	amd64) "$dist/amd64/hark" "$@" ;;
	arm64) QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64-static "$dist/arm64/hark" "$@" ;;
	armhf) QEMU_LD_PREFIX=/usr/arm-linux-gnueabihf qemu-arm-static "$dist/armhf/hark" "$@" ;;
	esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The bundled sample, plus (when espeak-ng and sox are here) speech between stretches of
# quiet noise, so the gate also opens and closes.
wavs=()
[ -f "$root/testdata/demo/sample.wav" ] && wavs+=("$root/testdata/demo/sample.wav")
if command -v espeak-ng >/dev/null && command -v sox >/dev/null; then
	espeak-ng -w "$work/speech.wav" "Turn on the kitchen light. Then tell me the weather for tomorrow." 2>/dev/null
	sox -q "$work/speech.wav" -r 16000 -c 1 -b 16 "$work/speech16.wav" pad 3 4
	len=$(soxi -D "$work/speech16.wav")
	sox -q -n -r 16000 -c 1 -b 16 "$work/noise.wav" synth "$len" pinknoise vol 0.02
	sox -q -m "$work/speech16.wav" "$work/noise.wav" "$work/gated.wav"
	wavs+=("$work/gated.wav")
fi
[ ${#wavs[@]} -gt 0 ] || fail "no testdata/demo/sample.wav and no espeak-ng/sox to make a WAV"

declare -A want_target=([amd64]=linux/amd64 [arm64]=linux/arm64 [armhf]=linux/arm)
status=0
for wav in "${wavs[@]}"; do
	name=$(basename "$wav" .wav)
	for a in amd64 arm64 armhf; do
		t0=$(now)
		v=$(run "$a" version) || fail "$a: hark version"
		grep -q "${want_target[$a]})" <<<"$v" || fail "$a: version says '$v', want target ${want_target[$a]}"
		csv=$work/$name.$a.csv
		run "$a" vad "$wav" --csv >"$csv" 2>"$work/$a.err" || fail "$a: hark vad $name: $(cat "$work/$a.err")"
		[ "$(head -n1 "$csv")" = "start_s,end_s,level_dbfs,floor_dbfs,speech,sent" ] || fail "$a: CSV header: $(head -n1 "$csv")"
		rows=$(($(wc -l <"$csv") - 1))
		[ "$rows" -gt 0 ] || fail "$a: no CSV rows"
		printf 'cross-check: %-5s %-12s %d frames, %d speech, %d sent (%s s)  [%s]\n' "$a" "$name" "$rows" \
			"$(awk -F, 'NR > 1 && $5 == 1' "$csv" | wc -l)" "$(awk -F, 'NR > 1 && $6 == 1' "$csv" | wc -l)" \
			"$(secs "$t0" "$(now)")" "$v"
	done
	for a in arm64 armhf; do
		if ! cmp -s "$work/$name.amd64.csv" "$work/$name.$a.csv"; then
			echo "cross-check: FAIL: $a CSV for $name differs from amd64 ($(diff "$work/$name.amd64.csv" "$work/$name.$a.csv" | grep -c '^<') rows):" >&2
			diff "$work/$name.amd64.csv" "$work/$name.$a.csv" | head -20 >&2
			status=1
		fi
	done
done
[ "$status" = 0 ] || exit 1
printf 'cross-check: PASS: arm64 and armhf CSVs identical to amd64 for %d WAV file(s) in %s s\n' \
	"${#wavs[@]}" "$(secs "$start" "$(now)")"
