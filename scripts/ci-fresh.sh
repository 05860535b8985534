#!/usr/bin/env bash
# ci-fresh.sh: runs CI (`.ci/run`) on a fresh machine, to prove that the project installs
# everything it needs (scripts/install-test-deps.sh) on a machine that has only Go, gcc,
# git and apt. `make ci-fresh` runs it.
#
# The machine is a minimal Debian bookworm root (debootstrap --variant=minbase with gcc and
# git; cached under ~/.cache/hark, see scripts/lib-root.sh) on a throwaway overlay, plus
# this machine's Go (/usr/local/go) and its Debian apt sources. The repository's HEAD (what
# is committed, not the work tree) is cloned into it and `.ci/run` runs there under chroot
# with /proc, /sys, /dev and fresh /tmp and /run, sharing this machine's network (apt and
# the Go module proxy are reached from inside). Everything is unmounted and removed on
# exit. Go's module and build caches start empty, as on a new machine.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { echo "ci-fresh: $*"; }

if [ "$(id -u)" -ne 0 ]; then
	say "SKIP: needs root (debootstrap, mounts, chroot)"
	exit 0
fi
goroot=${GOROOT_FRESH:-/usr/local/go}
[ -x "$goroot/bin/go" ] || { say "FAIL: no Go at $goroot"; exit 1; }

. "$repo/scripts/lib-root.sh"
t0=$SECONDS
lower=$(bookworm_root ci-fresh gcc,git)

work=$(mktemp -d /var/tmp/hark-ci-fresh.XXXXXX)
trap 'overlay_root_cleanup "$work"' EXIT
trap 'exit 130' INT TERM
root=$(overlay_root "$lower" "$work")

# The machine: Go, the same Debian sources as this one, name resolution for apt and the
# Go module proxy.
mkdir -p "$root/usr/local"
cp -a "$goroot" "$root/usr/local/go"
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
	cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
	: >"$root/etc/apt/sources.list"
fi
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# A machine whose environment names its own TLS trust (SSL_CERT_FILE: a sandbox that
# intercepts HTTPS adds its CA there) passes it on, as it does to CI; installing Debian's
# ca-certificates inside must not replace it, so it lives outside that package's files.
tls_env=()
if [ -n "${SSL_CERT_FILE:-}" ] && [ -f "$SSL_CERT_FILE" ]; then
	cp -L "$SSL_CERT_FILE" "$root/etc/ssl/machine-ca-bundle.crt" 2>/dev/null ||
		{ mkdir -p "$root/etc/ssl" && cp -L "$SSL_CERT_FILE" "$root/etc/ssl/machine-ca-bundle.crt"; }
	tls_env=(SSL_CERT_FILE=/etc/ssl/machine-ca-bundle.crt)
fi
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
mount -t tmpfs tmpfs "$root/tmp"
mount -t tmpfs tmpfs "$root/run"

head=$(git -C "$repo" rev-parse HEAD)
git clone -q --no-hardlinks "$repo" "$root/root/hark"
git -C "$root/root/hark" checkout -q "$head"
say "fresh root ready in $((SECONDS - t0)) s: Debian $(cat "$root/etc/debian_version"), $("$goroot/bin/go" version | cut -d' ' -f3), gcc, git; HEAD $(git -C "$repo" log -1 --format='%h %s' | cut -c1-60)"
if [ -e "$root/usr/bin/make" ] || [ -e "$root/usr/sbin/mosquitto" ]; then
	say "FAIL: the fresh root is not fresh"
	exit 1
fi

t1=$SECONDS
status=0
chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 CI=true TERM=dumb "${tls_env[@]}" \
	PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/bash -c 'cd /root/hark && bash .ci/run </dev/null' || status=$?
if [ "$status" = 0 ]; then
	say "PASS: .ci/run on a fresh bookworm root took $((SECONDS - t1)) s (whole run $((SECONDS - t0)) s)"
else
	say "FAIL: .ci/run exited $status after $((SECONDS - t1)) s"
fi
exit "$status"
