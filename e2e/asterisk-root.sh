#!/bin/sh
# Builds, once, the Debian sid chroot that holds the Asterisk 22 the end-to-end
# suite runs against. Debian stable has no asterisk package; sid does. With
# it, MariaDB's ODBC driver, through which Asterisk writes its call detail
# records into a MariaDB table as FreePBX does (cdr_adaptive_odbc).
#
# Usage: e2e/asterisk-root.sh            (as root)
#   MOVIDESK_AGI_ASTERISK_ROOT   where the chroot lives
#                                (default /var/cache/movidesk-agi/asterisk-root)
#   MOVIDESK_AGI_DEBIAN_MIRROR   Debian mirror (default: the one apt already uses)
#
# Idempotent: an existing chroot is reused (packages added to this script
# since it was built are installed into it). The build goes to ROOT.tmp and is
# renamed into place only when complete, so an interrupted build never leaves
# a half-made chroot that a later run would mistake for a good one.
set -eu

ROOT=${MOVIDESK_AGI_ASTERISK_ROOT:-/var/cache/movidesk-agi/asterisk-root}
TMP=$ROOT.tmp

die() {
	echo "asterisk-root.sh: cannot build the Asterisk chroot at $ROOT: $*" >&2
	exit 1
}

ready() {
	[ -x "$ROOT/usr/sbin/asterisk" ] && [ -f "$ROOT/usr/lib/x86_64-linux-gnu/asterisk/modules/res_agi.so" ]
}

# Packages added to the chroot after it was first built; a chroot built
# before them gets them installed in place. The core prompts (beep,
# demo-congrats, digits/, letters/...) come with asterisk as a dependency;
# they are named so that the FastAGI scenarios never run without them.
EXTRAS="odbc-mariadb asterisk-core-sounds-en-gsm"
extras_ready() {
	[ -f "$ROOT/usr/lib/x86_64-linux-gnu/odbc/libmaodbc.so" ] &&
		[ -f "$ROOT/usr/share/asterisk/sounds/en_US_f_Allison/beep.gsm" ] &&
		[ -f "$ROOT/usr/share/asterisk/sounds/en_US_f_Allison/demo-congrats.gsm" ]
}

# install_extras installs EXTRAS with the chroot's own apt, one apt at a
# time on the machine. The mirror may be a snapshot whose Release file has
# expired: its age is not checked.
install_extras() {
	echo "asterisk-root.sh: installing $EXTRAS into $ROOT" >&2
	DEBIAN_FRONTEND=noninteractive flock /var/lock/movidesk-agi-apt.lock chroot "$ROOT" sh -c \
		"apt-get -o Acquire::Check-Valid-Until=false -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $EXTRAS" >&2 ||
		die "installing $EXTRAS into the chroot failed"
	extras_ready || die "installed $EXTRAS, but $ROOT/usr/lib/x86_64-linux-gnu/odbc/libmaodbc.so or the prompts under $ROOT/usr/share/asterisk/sounds/en_US_f_Allison are missing"
}

if ready; then
	if ! extras_ready; then
		[ "$(id -u)" = 0 ] || die "installing $EXTRAS into the chroot needs root (running as uid $(id -u))"
		install_extras
	fi
	exit 0
fi

[ "$(id -u)" = 0 ] || die "debootstrap and chroot need root (running as uid $(id -u))"

mkdir -p "$(dirname "$ROOT")" || die "cannot create $(dirname "$ROOT")"

# Two runs starting at once must not build into the same .tmp directory.
exec 9>"$ROOT.lock" || die "cannot open lock file $ROOT.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9 || die "cannot lock $ROOT.lock"
fi
if ready; then
	extras_ready || install_extras
	exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
	echo "asterisk-root.sh: installing debootstrap" >&2
	# Other packages' tests may install theirs at the same time: one apt at a time.
	DEBIAN_FRONTEND=noninteractive flock /var/lock/movidesk-agi-apt.lock sh -c \
		'apt-get -o DPkg::Lock::Timeout=600 update && apt-get -o DPkg::Lock::Timeout=600 install -y debootstrap' >&2 ||
		die "apt-get install debootstrap failed"
fi

mirror=${MOVIDESK_AGI_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	# The mirror apt already reaches; deb822 first, then the one-line format.
	mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*debian\/*\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
fi
if [ -z "$mirror" ]; then
	mirror=$(sed -n 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*debian\/*\)[[:space:]].*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n 1)
fi
mirror=${mirror:-http://deb.debian.org/debian}

rm -rf "$TMP"
echo "asterisk-root.sh: building Debian sid with Asterisk into $ROOT from $mirror (about a minute, 500 MB)" >&2
if ! debootstrap --variant=minbase --include=asterisk,asterisk-modules,$(echo $EXTRAS | tr " " ,) sid "$TMP" "$mirror" >&2; then
	tail -n 20 "$TMP/debootstrap/debootstrap.log" >&2 2>/dev/null || true
	rm -rf "$TMP"
	die "debootstrap failed (mirror $mirror)"
fi
[ -x "$TMP/usr/sbin/asterisk" ] || { rm -rf "$TMP"; die "debootstrap finished but $TMP/usr/sbin/asterisk is missing"; }
mv "$TMP" "$ROOT" || die "cannot rename $TMP to $ROOT"
ready || die "the chroot at $ROOT lacks asterisk or res_agi.so"
extras_ready || die "the chroot at $ROOT lacks $EXTRAS"
echo "asterisk-root.sh: Asterisk chroot ready at $ROOT" >&2
