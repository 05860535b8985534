# lib-root.sh: minimal Debian bookworm roots for the checks that need a clean system
# (`make ci-fresh`, `make systemd-check`). Source it; it defines:
#
#   bookworm_root NAME PKG,PKG,...   prints the path of a pristine root made by
#                                    `debootstrap --variant=minbase --include=PKGS bookworm`,
#                                    cached under $HARK_CACHE (default ~/.cache/hark), keyed
#                                    by NAME and the package list, so only the first run pays
#                                    for debootstrap; the downloaded .debs are cached too.
#   overlay_root LOWER DIR           mounts a writable overlay of LOWER at DIR/root (changes go
#                                    to DIR/upper), so every run starts from the pristine root
#                                    and leaves it untouched; prints DIR/root.
#   overlay_root_cleanup DIR         unmounts everything under DIR/root and removes DIR.
#
# Needs root. The cache lives outside the repository: a fresh clone (CI) reuses it.

HARK_CACHE=${HARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hark}
HARK_DEBIAN_MIRROR=${HARK_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Bump when the way roots are made changes, so stale cached roots are not reused.
_root_recipe=1

bookworm_root() {
	local name=$1 pkgs=$2 key root tmp
	key=$(printf '%s\n' "$_root_recipe" "$name" "$pkgs" "$HARK_DEBIAN_MIRROR" | sha256sum | cut -c1-12)
	root=$HARK_CACHE/roots/$name-$key
	mkdir -p "$HARK_CACHE/roots" "$HARK_CACHE/debs"
	(
		# One debootstrap per root at a time: a second caller waits and reuses the result.
		flock 9
		[ -f "$root/.complete" ] && exit 0
		if ! command -v debootstrap >/dev/null; then
			echo "root: installing debootstrap" >&2
			apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
		fi
		rm -rf "$root"
		tmp=$(mktemp -d "$HARK_CACHE/roots/.tmp-$name-XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		echo "root: debootstrap bookworm ($name: $pkgs) into $HARK_CACHE/roots (once; cached)" >&2
		local t0=$SECONDS
		if ! debootstrap --variant=minbase --include="$pkgs" --cache-dir="$HARK_CACHE/debs" \
			bookworm "$tmp" "$HARK_DEBIAN_MIRROR" >"$tmp.log" 2>&1; then
			tail -n 30 "$tmp.log" >&2
			rm -f "$tmp.log"
			echo "root: debootstrap failed" >&2
			exit 1
		fi
		rm -f "$tmp.log"
		chroot "$tmp" apt-get clean
		echo "root: debootstrap took $((SECONDS - t0)) s" >&2
		touch "$tmp/.complete"
		mv "$tmp" "$root"
		trap - EXIT
		# Roots of this name made from an older package list or recipe are not used again.
		local old
		for old in "$HARK_CACHE/roots/$name"-*; do
			[ "$old" = "$root" ] || [ ! -d "$old" ] || rm -rf "$old"
		done
	) 9>"$HARK_CACHE/roots/.lock-$name" || return 1
	echo "$root"
}

overlay_root() {
	local lower=$1 dir=$2
	mkdir -p "$dir/upper" "$dir/work" "$dir/root"
	mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$dir/root" || return 1
	echo "$dir/root"
}

_mounts_under() {
	awk -v r="$1" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo | sort -r
}

overlay_root_cleanup() {
	local dir=$1 m
	[ -n "$dir" ] && [ -d "$dir" ] || return 0
	# Deepest mounts first; a busy one is detached lazily.
	for m in $(_mounts_under "$dir/root"); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	# Never rm -rf through a mount that is still there (a bind of /dev or /proc).
	if [ -n "$(_mounts_under "$dir/root")" ]; then
		echo "root: still mounted under $dir/root; left in place:" >&2
		_mounts_under "$dir/root" >&2
		return 1
	fi
	rm -rf "$dir"
}
