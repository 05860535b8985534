#!/usr/bin/env bash
# check.sh DEB NEXT_DEB DGEMU: proves hark.service under a real systemd (252, Debian
# bookworm) running as PID 1 in a container. Run it through `make systemd-check`, which
# builds the arguments: the amd64 .deb, the same package with a higher version (for the
# upgrade) and a static dgemu (the Deepgram emulator, run inside the container).
#
# A minimal bookworm root (debootstrap --variant=minbase, cached under ~/.cache/hark, see
# scripts/lib-root.sh) is booted with systemd-nspawn on a throwaway overlay; commands run
# inside through nsenter on the container's PID 1. The host needs no systemd: registration
# is off, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 gives the container cgroup2 and
# --system-call-filter=bpf lets DevicePolicy= be enforced, as on a real bookworm host.
# --private-network: the container has only its own loopback, where mosquitto (the
# Debian package) and dgemu listen.
#
# Each behaviour is a named check; the run ends with "N passed, N failed". Options:
#   HARK_CHECK_KEEP=1   leave the container running at the end (prints how to enter it)
#   HARK_CHECK_ONLY=RE  run only the checks whose name matches the regular expression
#                       (install always runs first)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
say() { echo "systemd-check: $*"; }

if [ $# -ne 3 ]; then
	echo "usage: $0 DEB NEXT_DEB DGEMU (make systemd-check builds them)" >&2
	exit 2
fi
deb=$(readlink -f "$1") next=$(readlink -f "$2") dgemu=$(readlink -f "$3")
for f in "$deb" "$next" "$dgemu"; do
	[ -f "$f" ] || { echo "systemd-check: no such file: $f" >&2; exit 2; }
done

if [ "$(id -u)" -ne 0 ]; then
	say "SKIP: needs root (debootstrap, overlay mounts, systemd-nspawn)"
	exit 0
fi
if ! command -v systemd-nspawn >/dev/null; then
	say "SKIP: systemd-nspawn is not available (apt-get install systemd-container)"
	exit 0
fi

. "$repo/scripts/lib-root.sh"
t_start=$SECONDS
lower=$(bookworm_root systemd systemd,systemd-sysv,dbus,libasound2,mosquitto,mosquitto-clients,adduser,procps) || exit 1

work=$(mktemp -d /var/tmp/hark-systemd-check.XXXXXX)
nspawn_pid=
cleanup() {
	if [ "${HARK_CHECK_KEEP:-}" = 1 ] && [ -n "$nspawn_pid" ]; then
		say "kept: nsenter -t $pid1 -a /bin/bash   (stop: kill $nspawn_pid; then umount -R $work/root; rm -rf $work)"
		return
	fi
	if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		# SIGTERM makes nspawn power the container off cleanly.
		kill -TERM "$nspawn_pid" 2>/dev/null
		for _ in $(seq 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$nspawn_pid" 2>/dev/null
		wait "$nspawn_pid" 2>/dev/null
	fi
	overlay_root_cleanup "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

root=$(overlay_root "$lower" "$work") || exit 1

# What a real installation has and debootstrap does not write.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo hark-check >"$root/etc/hostname"
mkdir -p "$root/opt/check"
cp "$deb" "$root/opt/check/hark.deb"
cp "$next" "$root/opt/check/hark-next.deb"
install -m 0755 "$dgemu" "$root/usr/local/bin/dgemu"
cp "$repo/testdata/demo/sample.wav" "$repo/testdata/demo/sample.json" "$root/opt/check/"
chmod 0644 "$root/opt/check/"*

SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --quiet --boot --register=no --keep-unit \
	--private-network --console=pipe --system-call-filter=bpf --machine=hark-check \
	-D "$root" >"$work/console.log" 2>&1 </dev/null &
nspawn_pid=$!
pid1=
# The container's PID 1 is the nspawn child that is PID 1 in its own PID namespace (the
# first child nspawn forks is a short-lived helper).
for _ in $(seq 100); do
	for c in $(pgrep -P "$nspawn_pid"); do
		if grep -qE '^NSpid:.*[[:space:]]1$' "/proc/$c/status" 2>/dev/null; then pid1=$c; fi
	done
	[ -n "$pid1" ] && break
	kill -0 "$nspawn_pid" 2>/dev/null || { cat "$work/console.log"; say "FAIL: systemd-nspawn exited"; exit 1; }
	sleep 0.1
done
[ -n "$pid1" ] || { say "FAIL: no container PID 1"; exit 1; }

# ct CMD...: runs CMD inside the container (all its namespaces), with a clean environment.
ct() { nsenter -t "$pid1" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_PAGER= "$@"; }
# cts SCRIPT: runs a bash script inside.
cts() { ct /bin/bash -c "$1"; }

# PID 1 takes a moment to open its private bus; then wait for the boot to finish.
for _ in $(seq 240); do
	ct test -S /run/systemd/private 2>/dev/null && break
	sleep 0.25
done
state=$(ct systemctl is-system-running --wait 2>&1)
case "$state" in
running | degraded) ;;
*) cat "$work/console.log"; say "FAIL: the container did not boot: $state"; exit 1 ;;
esac
say "container booted: $(ct systemctl --version | head -n1) as PID 1 (host pid $pid1), $((SECONDS - t_start)) s"

# ---- helpers for checks (each check runs in a subshell: fail ends only that check) ----

fail() { echo "FAIL: $*"; exit 1; }
note() { echo "$*"; }

# wait_until SECONDS DESCRIPTION SCRIPT: polls SCRIPT (inside) until it succeeds.
wait_until() {
	local limit=$1 what=$2 script=$3 end=$((SECONDS + $1))
	while ! cts "$script" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$end" ] || fail "$what: not within $limit s"
		sleep 0.25
	done
}
prop() { ct systemctl show -p "$1" --value hark; }
# mark: now, as CLOCK_MONOTONIC seconds (the container shares the kernel's clock).
# journal_since MARK [journalctl args...]: hark's and systemd's lines about hark since MARK,
# in short-monotonic form. (Not --after-cursor: journalctl 252 combined with -u or -p
# drops stream lines of a process that already exited.)
mark() { cut -d' ' -f1 /proc/uptime; }
journal_since() {
	local m=$1
	shift
	ct journalctl --no-pager -q -o short-monotonic -u hark "$@" |
		awk -v m="$m" '{ t = $0; sub(/^\[ */, "", t); sub(/\].*/, "", t); if (t + 0 >= m + 0) print }'
}

# case_conf LINE...: the per-check drop-in ([Service] lines), replacing the previous one.
case_conf() {
	{
		echo "[Service]"
		printf '%s\n' "$@"
	} | ct tee /etc/systemd/system/hark.service.d/20-case.conf >/dev/null
	ct systemctl daemon-reload
}

# reset: hark stopped, not failed, no leftovers from the previous check.
reset() {
	ct systemctl stop hark >/dev/null 2>&1
	ct systemctl reset-failed hark >/dev/null 2>&1
	cts 'rm -rf /var/lib/hark/spool /var/lib/hark/queue* /var/lib/hark/remote-config.yaml /var/lib/hark/muted'
	ct rm -f /etc/systemd/system/hark.service.d/20-case.conf
	ct systemctl daemon-reload
}

# sub_start NAME TOPIC...: subscribes (mosquitto_sub, inside) and returns once the
# subscription is live: a probe message published to the subscriber's own topic came back.
sub_start() {
	local name=$1
	shift
	local args=(-h 127.0.0.1 -v -q 1 -t "check/probe/$name")
	for t in "$@"; do args+=(-t "$t"); done
	ct mosquitto_sub "${args[@]}" >"$work/sub-$name.out" 2>&1 &
	echo $! >"$work/sub-$name.pid"
	local end=$((SECONDS + 20))
	until grep -q "^check/probe/$name " "$work/sub-$name.out"; do
		[ "$SECONDS" -lt "$end" ] || fail "subscriber $name did not come up: $(cat "$work/sub-$name.out")"
		ct mosquitto_pub -h 127.0.0.1 -t "check/probe/$name" -m ready
		sleep 0.2
	done
}
sub_stop() { kill "$(cat "$work/sub-$1.pid")" 2>/dev/null; wait "$(cat "$work/sub-$1.pid")" 2>/dev/null; }
sub_out() { grep -v "^check/probe/" "$work/sub-$1.out"; }
# sub_wait NAME COUNT SECONDS PATTERN: waits until COUNT messages match PATTERN.
sub_wait() {
	local end=$((SECONDS + $3))
	until [ "$(sub_out "$1" | grep -c -- "$4")" -ge "$2" ]; do
		[ "$SECONDS" -lt "$end" ] || fail "$2 message(s) matching '$4' not within $3 s; got: $(sub_out "$1" | tail -n 5)"
		sleep 0.25
	done
}

# The Deepgram emulator inside, recognising the sample's sentences by their audio.
start_dgemu() {
	ct systemd-run --quiet --unit=dgemu /usr/local/bin/dgemu --addr 127.0.0.1:8765 \
		--reference /opt/check/sample.wav --ready-file /run/dgemu.url
	wait_until 20 "dgemu listening" 'test -s /run/dgemu.url'
}

# ---- the checks ----

KEY=check-key-$RANDOM$RANDOM
BASE="tcp://127.0.0.1:1883"

check_install() {
	local out
	out=$(ct apt-get install -y /opt/check/hark.deb 2>&1) || fail "apt-get install: $out"
	echo "$out" >"$work/install.out"
	ct dpkg -s hark | grep -q '^Status: install ok installed' || fail "not installed"
	ct getent passwd hark >/dev/null || fail "no user hark"
	[ "$(ct systemctl is-enabled hark)" = enabled ] || fail "unit not enabled"
	grep -q "no Deepgram API key yet" <<<"$out" || fail "postinst did not say the key is missing"
	# The device id and MQTT broker the checks rely on, for every later start.
	ct mkdir -p /etc/systemd/system/hark.service.d
	printf '[Service]\nEnvironment=HARK_DEVICE_ID=check HARK_MQTT_BROKER=%s HARK_DEEPGRAM_URL=ws://127.0.0.1:8765/v1/listen\n' "$BASE" |
		ct tee /etc/systemd/system/hark.service.d/10-check.conf >/dev/null
	ct systemctl daemon-reload
	start_dgemu
	note "installed $(ct dpkg-query -W -f='${Version}' hark); user hark: $(ct id hark)"
}

# Defect 5: adduser's warning about the home directory must not reach the installer's output.
check_postinst_quiet() {
	grep -i "can't be accessed\|warning" "$work/install.out" && fail "postinst printed a warning"
	note "postinst output: $(grep -c . "$work/install.out") lines, no warning"
}

check_exit_78_no_key() {
	reset
	local c
	c=$(mark)
	ct systemctl start hark >/dev/null 2>&1 && fail "start succeeded without a key"
	[ "$(prop ExecMainStatus)" = 78 ] || fail "exit status $(prop ExecMainStatus), want 78"
	wait_until 10 "unit failed" '[ "$(systemctl show -p SubState --value hark)" = failed ]'
	[ "$(prop NRestarts)" = 0 ] || fail "restarted $(prop NRestarts) times"
	journal_since "$c" | grep -q "no Deepgram API key" || fail "journal does not say the key is missing"
	note "status=78/CONFIG, unit failed, not restarted"
}

check_exit_78_bad_config() {
	reset
	case_conf "Environment=HARK_VAD_THRESHOLD_DB=loud"
	ct systemctl start hark >/dev/null 2>&1 && fail "start succeeded with a bad configuration"
	[ "$(prop ExecMainStatus)" = 78 ] || fail "exit status $(prop ExecMainStatus), want 78"
	wait_until 10 "unit failed" '[ "$(systemctl show -p SubState --value hark)" = failed ]'
	[ "$(prop NRestarts)" = 0 ] || fail "restarted $(prop NRestarts) times"
	note "status=78/CONFIG, unit failed, not restarted"
}

# Defect 3: why hark died must show under journalctl -p err (the docs say -p warning).
check_fatal_errors_at_err() {
	reset
	local c out
	c=$(mark)
	ct systemctl start hark >/dev/null 2>&1
	case_conf "Environment=HARK_VAD_THRESHOLD_DB=loud"
	ct systemctl reset-failed hark
	ct systemctl start hark >/dev/null 2>&1
	out=$(journal_since "$c" -p err)
	note "journalctl -u hark -p err:"
	note "$out"
	grep -q "no Deepgram API key" <<<"$out" || fail "'no Deepgram API key' is not at priority err"
	grep -q "invalid configuration" <<<"$out" || fail "'invalid configuration' is not at priority err"
}

# Defect 4: a credential that cannot be read is reported as such, not as a missing key.
check_credential_unreadable() {
	reset
	cts "mkdir -p /etc/hark/check-creds && printf %s $KEY >/etc/hark/check-creds/deepgram-api-key && chmod 0700 /etc/hark/check-creds && chmod 0000 /etc/hark/check-creds/deepgram-api-key"
	# The credential directory systemd hands over, replaced by one hark (user hark) cannot read.
	case_conf "Environment=CREDENTIALS_DIRECTORY=/etc/hark/check-creds"
	local c out
	c=$(mark)
	ct systemctl start hark >/dev/null 2>&1 && fail "started with an unreadable key"
	out=$(journal_since "$c")
	cts 'rm -rf /etc/hark/check-creds'
	grep -F -- "$KEY" <<<"$out" && fail "the key reached the journal"
	note "$(grep 'hark:' <<<"$out")"
	grep -q "no Deepgram API key" <<<"$out" && fail "reported as a missing key"
	grep -q "deepgram-api-key.*permission denied" <<<"$out" || fail "the journal does not say the credential could not be read"
	[ "$(prop ExecMainStatus)" = 78 ] || fail "exit status $(prop ExecMainStatus), want 78"
}

check_credential() {
	reset
	cts "printf %s $KEY >/etc/hark/credentials/deepgram-api-key"
	case_conf "Environment=HARK_CAPTURE_BACKEND=null"
	local c pid
	c=$(mark)
	ct systemctl start hark || fail "start failed: $(journal_since "$c" | tail -n 5)"
	pid=$(prop MainPID)
	journal_since "$c" | grep -q 'credential loaded.*api key, systemd credential deepgram-api-key' ||
		fail "key not loaded from the credential"
	ct grep -qF -- "$KEY" "/proc/$pid/environ" "/proc/$pid/cmdline" && fail "the key is in the environment or command line"
	cts "journalctl --no-pager -o cat | grep -qF -- $KEY" && fail "the key reached the journal"
	note "loaded from the systemd credential; not in environ, cmdline or journal"
}

check_ready() {
	reset
	case_conf "Environment=HARK_CAPTURE_BACKEND=null"
	local c out
	c=$(mark)
	timeout 60 nsenter -t "$pid1" -a -- env -i PATH=/usr/bin:/bin systemctl start hark || fail "start failed or did not finish in 60 s"
	[ "$(prop ActiveState)/$(prop SubState)" = active/running ] || fail "state $(prop ActiveState)/$(prop SubState)"
	out=$(journal_since "$c")
	grep -q "hark running" <<<"$out" || fail "no 'hark running' in the journal"
	# Type=notify: active from READY=1, which comes after the process started.
	local started active
	started=$(prop ExecMainStartTimestampMonotonic) active=$(prop ActiveEnterTimestampMonotonic)
	[ "$active" -gt "$started" ] || fail "active at $active, process started at $started"
	note "Type=notify: systemctl start returned at READY=1, $(((active - started) / 1000)) ms after the process started; active/running"
}

check_status() {
	local st
	st=$(prop StatusText)
	note "STATUS=$st"
	[[ "$st" == running* ]] || fail "status line '$st' does not start with running"
	[[ "$st" == *uplink* ]] || fail "status line '$st' lacks the uplink"
}

check_reload() {
	local pid c
	pid=$(prop MainPID)
	c=$(mark)
	ct sed -i 's/^\(  level: \)info/\1debug/' /etc/hark/hark.yaml
	ct grep -q '^  level: debug' /etc/hark/hark.yaml || fail "could not set log.level to debug in the packaged hark.yaml"
	ct systemctl reload hark || fail "reload failed"
	ct sed -i 's/^\(  level: \)debug/\1info/' /etc/hark/hark.yaml
	[ "$(prop MainPID)" = "$pid" ] || fail "reload restarted hark"
	[ "$(prop ActiveState)" = active ] || fail "not active after reload"
	journal_since "$c" | grep -q 'configuration reloaded.*log.level' || fail "reload not logged: $(journal_since "$c")"
	ct systemctl reload hark || fail "second reload failed"
	note "SIGHUP reload applied log.level live; same PID $pid"
}

check_transcripts_mqtt() {
	reset
	sub_start tr hark/check/transcript
	case_conf "Environment=HARK_CAPTURE_INPUT=/opt/check/sample.wav"
	ct systemctl start hark || fail "start failed"
	sub_wait tr 4 90 '"source":"live"'
	sub_stop tr
	local out
	out=$(sub_out tr)
	for s in "Hello from hark" "Please turn on the lights" "What is the weather" "Thank you, that is all"; do
		grep -q "$s" <<<"$out" || fail "no transcript '$s': $out"
	done
	wait_until 60 "hark exits at the end of the file" '[ "$(systemctl show -p SubState --value hark)" = dead ]'
	[ "$(prop Result)" = success ] || fail "result $(prop Result)"
	note "4 transcripts on hark/check/transcript; unit ended with result success at the end of the file"
}

# A file whose speech cannot be transcribed (Deepgram unreachable) ends: hark spools it,
# tries to drain the spool, and must stop within TimeoutStopSec instead of being SIGKILLed
# and restarted (defect 2), writing the spool under ProtectSystem=strict.
SPOOL_CASE=("Environment=HARK_CAPTURE_INPUT=/opt/check/sample.wav HARK_DEEPGRAM_URL=ws://127.0.0.1:9/v1/listen")
check_stop_budget() {
	reset
	case_conf "${SPOOL_CASE[@]}"
	local c out
	c=$(mark)
	ct systemctl start hark || fail "start failed"
	wait_until 120 "hark stops at the end of the file" \
		'[ "$(systemctl show -p SubState --value hark)" = dead ] || [ "$(systemctl show -p NRestarts --value hark)" != 0 ]'
	out=$(journal_since "$c")
	grep -E "timed out|Killing|Scheduled restart" <<<"$out" && fail "the stop overran TimeoutStopSec"
	[ "$(prop Result)" = success ] || fail "result $(prop Result)"
	[ "$(prop NRestarts)" = 0 ] || fail "restarted $(prop NRestarts) times"
	note "$(grep -E 'STOPPING|stopped|Deactivated|spool not drained' <<<"$out" | tail -n 3)"
}

check_spool_protect_system() {
	local n ls
	n=$(cts 'ls /var/lib/hark/spool/*.wav 2>/dev/null | wc -l')
	[ "$n" -gt 0 ] || fail "nothing spooled"
	ls=$(cts 'stat -c "%a %U:%G %n" /var/lib/hark/spool /var/lib/hark/spool/*')
	note "$ls"
	grep -v '^700 hark:hark /var/lib/hark/spool$' <<<"$ls" | grep -v '^600 hark:hark ' | grep -v 'failed$' && fail "unexpected modes or owners"
	cts 'journalctl -u hark --no-pager -o cat | grep -i "read-only file system"' && fail "a write hit the read-only system"
	echo "$n" >"$work/spooled"
	note "$n entries spooled under ProtectSystem=strict"
}

# Defect 2: the same file replayed (a restart) must not spool the same audio again.
check_no_respool() {
	local before after
	before=$(cat "$work/spooled" 2>/dev/null) || fail "no spool from the previous check"
	ct systemctl start hark || fail "start failed"
	wait_until 120 "hark stops at the end of the file" '[ "$(systemctl show -p SubState --value hark)" = dead ]'
	after=$(cts 'ls /var/lib/hark/spool/*.wav 2>/dev/null | wc -l')
	[ "$after" = "$before" ] || fail "spool entries $before -> $after after replaying the same file"
	note "replay: still $after entries"
}

# The spool drains once Deepgram is back, and STATUS/state stop showing it at once
# (defect 5: they showed an entry ~50 s after the spool was empty).
check_spool_drains() {
	ct systemctl reset-failed hark
	case_conf "Environment=HARK_CAPTURE_BACKEND=null"
	sub_start sp hark/check/transcript hark/check/state
	ct systemctl start hark || fail "start failed"
	sub_wait sp 1 90 '"source":"spool"'
	wait_until 60 "spool empty" '[ -z "$(ls /var/lib/hark/spool/*.wav 2>/dev/null)" ]'
	local t0=$SECONDS
	wait_until 10 "STATUS without the spool" '! systemctl show -p StatusText --value hark | grep -q spool' ||
		fail "STATUS still shows the spool: $(prop StatusText)"
	sub_wait sp 1 10 '^hark/check/state .*"spool":{"entries":0'
	sub_stop sp
	note "spool drained through the pre-recorded endpoint; STATUS '$(prop StatusText)' $((SECONDS - t0)) s after"
}

# Stalled audio (stdin that stops delivering) ends in a watchdog restart that logs why, at
# priority err, without a goroutine dump and with a meaningful exit status (defect 5).
check_watchdog() {
	reset
	ct rm -f /run/hark-check.fifo
	ct mkfifo -m 0644 /run/hark-check.fifo
	# 2 s of silence, then the writer keeps the pipe open and writes nothing.
	ct systemd-run --quiet --unit=feeder /bin/sh -c 'exec 3>/run/hark-check.fifo; head -c 64000 /dev/zero >&3; exec sleep infinity'
	case_conf "Environment=HARK_CAPTURE_INPUT=-" "StandardInput=file:/run/hark-check.fifo" "WatchdogSec=6s"
	local c out inv
	c=$(mark)
	ct systemctl start hark || fail "start failed"
	inv=$(prop InvocationID)
	wait_until 90 "watchdog restart" '[ "$(systemctl show -p NRestarts --value hark)" -ge 1 ]'
	out=$(journal_since "$c")
	ct systemctl stop hark feeder
	grep -q "Watchdog timeout" <<<"$out" || fail "no watchdog timeout"
	local lines dump
	lines=$(ct journalctl --no-pager -q -o cat _SYSTEMD_INVOCATION_ID="$inv" | wc -l)
	dump=$(grep -cE 'hark\[[0-9]+\]: goroutine [0-9]+ \[' <<<"$out")
	note "$(grep -E 'Watchdog|Main process exited|watchdog' <<<"$out" | head -n 5)"
	note "the killed run wrote $lines journal lines"
	[ "$dump" = 0 ] || fail "goroutine dump in the journal ($dump goroutines, $lines lines)"
	grep -q "status=2/INVALIDARGUMENT" <<<"$out" && fail "exit status 2/INVALIDARGUMENT"
	ct journalctl --no-pager -q -o cat -p err _SYSTEMD_INVOCATION_ID="$inv" | grep -qi watchdog ||
		fail "hark did not log the watchdog stop at priority err"
}

# Defect 1: with the packaged configuration (ALSA) and no sound card, start-up finishes:
# READY while waiting for the device, STATUS and state say so, no job left waiting, and
# the watchdog counts the retries as progress.
check_no_device_ready() {
	reset
	case_conf "WatchdogSec=6s"
	sub_start nd hark/check/state
	timeout 30 nsenter -t "$pid1" -a -- env -i PATH=/usr/bin:/bin systemctl start hark ||
		fail "systemctl start did not finish within 30 s: $(prop StatusText)"
	[ "$(prop ActiveState)/$(prop SubState)" = active/running ] || fail "state $(prop ActiveState)/$(prop SubState)"
	[ -z "$(ct systemctl list-jobs --no-legend)" ] || fail "jobs waiting: $(ct systemctl list-jobs --no-legend)"
	local st pid
	st=$(prop StatusText)
	note "STATUS=$st"
	[[ "$st" == "waiting for device"* ]] || fail "STATUS does not say waiting for device"
	sub_wait nd 1 20 '"pipeline":"waiting_for_device"'
	sub_stop nd
	pid=$(prop MainPID)
	# Three watchdog periods with no audio at all: still the same process.
	local end=$((SECONDS + 20))
	while [ "$SECONDS" -lt "$end" ]; do
		[ "$(prop MainPID)" = "$pid" ] || fail "restarted while waiting: $(ct journalctl -u hark -n 5 --no-pager -o cat)"
		sleep 1
	done
	[ "$(prop NRestarts)" = 0 ] || fail "NRestarts $(prop NRestarts)"
	note "active, waiting for the device, same PID after 20 s (WatchdogSec=6s)"
}

check_upgrade() {
	reset
	case_conf "Environment=HARK_CAPTURE_BACKEND=null"
	ct systemctl start hark || fail "start failed"
	echo "# edited by the check" | ct tee -a /etc/hark/hark.yaml >/dev/null
	local pid out
	pid=$(prop MainPID)
	out=$(ct apt-get install -y /opt/check/hark-next.deb 2>&1) || fail "upgrade: $out"
	grep -qi "warning\|can't be accessed" <<<"$out" && fail "upgrade printed a warning: $out"
	wait_until 60 "restarted with the new package" "[ \"\$(systemctl show -p MainPID --value hark)\" != $pid ] && [ \"\$(systemctl show -p ActiveState --value hark)\" = active ]"
	[ "$(ct dpkg-query -W -f='${Version}' hark)" = "$(dpkg-deb -f "$next" Version)" ] || fail "version not upgraded"
	ct tail -n1 /etc/hark/hark.yaml | grep -q "edited by the check" || fail "edited hark.yaml replaced"
	[ "$(ct cat /etc/hark/credentials/deepgram-api-key)" = "$KEY" ] || fail "key lost"
	note "upgraded to $(ct dpkg-query -W -f='${Version}' hark); restarted (PID $pid -> $(prop MainPID)); hark.yaml and key kept"
}

check_remove() {
	[ "$(prop ActiveState)" = active ] || ct systemctl start hark || fail "hark not running before the removal"
	ct apt-get remove -y hark >/dev/null 2>&1 || fail "apt-get remove"
	[ "$(prop ActiveState)" = inactive ] || fail "still $(prop ActiveState)"
	ct test -e /usr/bin/hark && fail "binary left"
	ct test -f /etc/hark/hark.yaml || fail "configuration removed"
	ct test -s /etc/hark/credentials/deepgram-api-key || fail "credential removed"
	ct getent passwd hark >/dev/null || fail "user removed"
	note "stopped; program gone; configuration, credentials and user kept"
}

check_purge() {
	ct rm -rf /etc/systemd/system/hark.service.d
	ct apt-get purge -y hark >/dev/null 2>&1 || fail "apt-get purge"
	ct systemctl daemon-reload
	ct test -e /etc/hark && fail "/etc/hark left"
	ct test -e /var/lib/hark && fail "/var/lib/hark left"
	ct getent passwd hark >/dev/null && fail "user left"
	[ "$(prop LoadState)" = not-found ] || fail "unit still $(prop LoadState)"
	note "configuration, state, user and unit gone"
}

checks=(install postinst_quiet exit_78_no_key exit_78_bad_config fatal_errors_at_err credential_unreadable
	credential ready status reload transcripts_mqtt stop_budget spool_protect_system no_respool
	spool_drains watchdog no_device_ready upgrade remove purge)

passed=0 failed=0 failures=()
for name in "${checks[@]}"; do
	if [ -n "${HARK_CHECK_ONLY:-}" ] && [ "$name" != install ] && ! [[ "$name" =~ $HARK_CHECK_ONLY ]]; then
		continue
	fi
	t0=$SECONDS
	("check_$name") 2>&1 | sed -u 's/^/    /' >"$work/check.out"
	rc=${PIPESTATUS[0]}
	if [ "$rc" = 0 ]; then
		passed=$((passed + 1))
		printf 'systemd-check: PASS %-24s (%d s)\n' "$name" $((SECONDS - t0))
	else
		failed=$((failed + 1))
		failures+=("$name")
		printf 'systemd-check: FAIL %-24s (%d s)\n' "$name" $((SECONDS - t0))
	fi
	cat "$work/check.out"
	if [ "$name" = install ] && [ "$rc" != 0 ]; then
		break
	fi
done
say "took $((SECONDS - t_start)) s"
[ "$failed" = 0 ] || say "failed: ${failures[*]}"
echo "systemd-check: $passed passed, $failed failed"
[ "$failed" = 0 ]
