#!/usr/bin/env bash
# deb-check.sh PACKAGE.deb: checks a hark .deb (built for this machine's architecture).
#
# 1. Static: control fields, conffiles, file list with modes and owners (dpkg-deb).
# 2. Live, when run as root with unshare and overlayfs: the package is installed for real
#    with dpkg in a private mount namespace whose /etc, /var and /usr are overlays on
#    throwaway directories, so the maintainer scripts really run (adduser, deb-systemd-helper)
#    while the host is left untouched. It checks the user and groups, installed files,
#    modes, conffiles, the enabled unit, `hark config check` on the installed config,
#    `systemd-analyze verify` of the installed unit, an upgrade that keeps edited
#    conffiles and credentials, remove, and purge.
# systemd is not running in the namespace (as in a chroot), so nothing is started.
set -euo pipefail

fail() { echo "deb-check: FAIL: $*" >&2; exit 1; }
ok() { echo "deb-check: ok: $*"; }

if [ "${1:-}" = "--inside" ]; then
	inside=1
	deb=$2
	tmp=$3
else
	inside=0
	deb=${1:?usage: deb-check.sh PACKAGE.deb}
fi
[ -f "$deb" ] || fail "no such package: $deb"
deb=$(readlink -f "$deb")

# expect_mode PATH MODE OWNER:GROUP
expect_mode() {
	local got
	got=$(stat -c '%a %U:%G' "$1") || fail "$1 missing"
	[ "$got" = "$2 $3" ] || fail "$1 is $got, want $2 $3"
}

live() {
	echo "deb-check: installing $(basename "$deb") in a throwaway root (overlays on /etc /var /usr)"
	for d in etc var usr; do
		mkdir -p "$tmp/$d-up" "$tmp/$d-work"
		mount -t overlay overlay -o "lowerdir=/$d,upperdir=$tmp/$d-up,workdir=$tmp/$d-work" "/$d"
	done
	export DEBIAN_FRONTEND=noninteractive
	# Dependencies are checked statically above; the host need not have them.
	dpkg="dpkg --force-depends --log=/dev/null"

	if getent passwd hark >/dev/null; then fail "user hark exists before install"; fi
	out=$($dpkg -i "$deb" </dev/null 2>&1) || fail "dpkg -i: $out"
	grep -q "no Deepgram API key yet" <<<"$out" || fail "postinst did not say the key is missing: $out"
	if grep -qi "warning\|can't be accessed" <<<"$out"; then fail "the install printed a warning: $out"; fi
	ok "installed"

	IFS=: read -r _ _ uid _ _ home shell < <(getent passwd hark) || fail "user hark not created"
	[ "$uid" -lt 1000 ] || fail "hark is not a system user (uid $uid)"
	[ "$home" = /var/lib/hark ] || fail "home $home"
	expect_mode /var/lib/hark 700 hark:hark
	case "$shell" in */nologin|/bin/false) ;; *) fail "login shell $shell";; esac
	getent group hark >/dev/null || fail "group hark not created"
	id -nG hark | tr ' ' '\n' | grep -qx audio || fail "hark is not in group audio: $(id -nG hark)"
	ok "system user hark (uid $uid) in groups: $(id -nG hark)"

	expect_mode /usr/bin/hark 755 root:root
	expect_mode /lib/systemd/system/hark.service 644 root:root
	expect_mode /etc/hark 755 root:root
	expect_mode /etc/hark/hark.yaml 644 root:root
	expect_mode /etc/hark/credentials 700 root:root
	expect_mode /etc/hark/credentials/deepgram-api-key 600 root:root
	expect_mode /etc/hark/credentials/mqtt-password 600 root:root
	cmp -s /lib/systemd/system/hark.service "$here/../systemd/hark.service" || fail "installed unit differs from systemd/hark.service"
	ok "files, owners and modes"

	conf=$(dpkg-query -W -f='${Conffiles}\n' hark | awk 'NF {print $1}' | sort | tr '\n' ' ')
	[ "$conf" = "/etc/hark/credentials/deepgram-api-key /etc/hark/credentials/mqtt-password /etc/hark/hark.yaml " ] ||
		fail "conffiles: $conf"
	ok "conffiles: $conf"

	link=/etc/systemd/system/multi-user.target.wants/hark.service
	[ -L "$link" ] || fail "unit not enabled ($link missing)"
	ok "unit enabled: $link -> $(readlink "$link")"

	/usr/bin/hark version >/dev/null || fail "hark version"
	out=$(/usr/bin/hark config check --config /etc/hark/hark.yaml 2>&1) || fail "hark config check: $out"
	grep -q '^capture.backend .*"alsa"' <<<"$out" || fail "packaged config does not select ALSA"
	grep -q '^mqtt.broker .*"tcp://localhost:1883"' <<<"$out" || fail "packaged config broker"
	ok "hark config check --config /etc/hark/hark.yaml"
	if command -v systemd-analyze >/dev/null; then
		out=$(systemd-analyze verify --man=no /lib/systemd/system/hark.service 2>&1) || fail "systemd-analyze verify: $out"
		[ -z "$out" ] || fail "systemd-analyze verify: $out"
		ok "systemd-analyze verify of the installed unit"
	fi

	# Upgrade (a reinstall runs the same conffile logic): edited conffiles and
	# credentials are kept without a prompt (stdin is /dev/null: a prompt would fail).
	printf 'dg-test-key\n' >/etc/hark/credentials/deepgram-api-key
	printf '# edited by the operator\n' >>/etc/hark/hark.yaml
	mkdir -p /var/lib/hark/spool && touch /var/lib/hark/spool/x.wav
	out=$($dpkg -i "$deb" </dev/null 2>&1) || fail "upgrade: $out"
	[ "$(cat /etc/hark/credentials/deepgram-api-key)" = dg-test-key ] || fail "upgrade lost the API key"
	tail -n1 /etc/hark/hark.yaml | grep -q 'edited by the operator' || fail "upgrade replaced the edited hark.yaml"
	expect_mode /etc/hark/credentials/deepgram-api-key 600 root:root
	if grep -q "no Deepgram API key yet" <<<"$out"; then fail "upgrade nagged about the key"; fi
	ok "upgrade keeps edited hark.yaml and credentials"

	$dpkg -r hark </dev/null >/dev/null 2>&1 || fail "dpkg -r"
	[ ! -e /usr/bin/hark ] || fail "remove left /usr/bin/hark"
	[ -f /etc/hark/hark.yaml ] || fail "remove deleted the configuration"
	getent passwd hark >/dev/null || fail "remove deleted the user"
	ok "remove keeps configuration, credentials and user"

	$dpkg -P hark </dev/null >/dev/null 2>&1 || fail "dpkg -P"
	[ ! -e /etc/hark ] || fail "purge left /etc/hark: $(find /etc/hark)"
	[ ! -e /var/lib/hark ] || fail "purge left /var/lib/hark"
	if getent passwd hark >/dev/null; then fail "purge left the user hark"; fi
	if getent group hark >/dev/null; then fail "purge left the group hark"; fi
	[ ! -e "$link" ] || fail "purge left $link"
	[ ! -e /etc/systemd/system/hark.service ] || fail "purge left a mask"
	ok "purge removes /etc/hark, /var/lib/hark, user and group"
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ "$inside" = 1 ]; then
	live
	exit 0
fi

start=$(date +%s.%N)
info=$(dpkg-deb -f "$deb") || fail "not a .deb"
field() { awk -v k="$1" -F': ' '$1 == k {print $2}' <<<"$info"; }
[ "$(field Package)" = hark ] || fail "Package: $(field Package)"
arch=$(field Architecture)
case "$arch" in amd64|arm64|armhf) ;; *) fail "Architecture: $arch";; esac
grep -q 'libasound2t64 | libasound2' <<<"$(field Depends)" || fail "Depends lacks libasound2: $(field Depends)"
grep -q 'adduser' <<<"$(field Depends)" || fail "Depends lacks adduser"
grep -q 'procps' <<<"$(field Depends)" || fail "Depends lacks procps (/bin/kill for ExecReload=)"
ok "control: hark $(field Version) $arch, Depends: $(field Depends)"

ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl/DEBIAN"
[ "$(sort "$ctl/DEBIAN/conffiles" | tr '\n' ' ')" = "/etc/hark/credentials/deepgram-api-key /etc/hark/credentials/mqtt-password /etc/hark/hark.yaml " ] ||
	fail "conffiles: $(cat "$ctl/DEBIAN/conffiles")"
for s in postinst prerm postrm; do
	[ -x "$ctl/DEBIAN/$s" ] || fail "$s missing or not executable"
	sh -n "$ctl/DEBIAN/$s" || fail "$s: syntax"
done
listing=$(dpkg-deb -c "$deb" | awk '{print $1, $2, $6}')
for want in \
	"-rwxr-xr-x root/root ./usr/bin/hark" \
	"-rw-r--r-- root/root ./lib/systemd/system/hark.service" \
	"-rw-r--r-- root/root ./etc/hark/hark.yaml" \
	"drwx------ root/root ./etc/hark/credentials/" \
	"-rw------- root/root ./etc/hark/credentials/deepgram-api-key" \
	"-rw------- root/root ./etc/hark/credentials/mqtt-password"; do
	grep -qxF -- "$want" <<<"$listing" || fail "package lacks: $want"
done
size=$(dpkg-deb -c "$deb" | awk '$6 ~ /credentials\/./ && $3 != 0')
[ -z "$size" ] || fail "credential placeholders are not empty: $size"
ok "file list, modes, owners, empty credential placeholders, conffiles, scripts"

# Live install, when possible.
host=$(dpkg --print-architecture)
if [ "$arch" != "$host" ]; then
	echo "deb-check: skipping the live install: package is $arch, this machine $host"
elif [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null; then
	echo "deb-check: skipping the live install: needs root and unshare"
else
	tmp=$(mktemp -d)
	trap 'rm -rf "$ctl" "$tmp"' EXIT
	unshare -m --propagation private bash "${BASH_SOURCE[0]}" --inside "$deb" "$tmp"
fi
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" 'BEGIN { printf "deb-check: PASS (%.1f s)\n", b - a }'
