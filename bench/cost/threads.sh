#!/usr/bin/env bash
# threads.sh PID [SECONDS]: per thread of a running process, the context switches per
# second (voluntary and not) and the CPU time per second, over SECONDS (default 10), from
# /proc/PID/task/*. It tells which thread of hark wakes (Go's scheduler threads, its
# sysmon monitor, miniaudio's or libpulse's device thread) and what each costs. Go threads
# are named after the binary; look them up with gdb or perf when in doubt.
set -euo pipefail
pid=$1 secs=${2:-10}
snap() {
  for t in /proc/"$pid"/task/*; do
    printf '%s %s %s %s\n' "${t##*/}" \
      "$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")" \
      "$(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$t/status")" \
      "$(awk '{print $1}' "$t/schedstat")"
  done | sort
}
a=$(snap); sleep "$secs"; b=$(snap)
join <(echo "$a") <(echo "$b") | awk -v s="$secs" '{
  printf "tid %-8s %7.1f voluntary/s %6.1f involuntary/s %7.3f ms CPU/s\n", $1, ($5-$2)/s, ($6-$3)/s, ($7-$4)/s/1e6 }'
