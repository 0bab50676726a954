#!/usr/bin/env bash
# A copy-on-write volume pool for the local provider: a loop-mounted XFS filesystem made
# with reflink=1, so snapshots and clones of data directories share extents (FICLONE)
# instead of copying bytes. Needs root (mkfs, mount) and xfsprogs.
#
#   pool-xfs.sh up   MOUNTPOINT [SIZE]   sparse image MOUNTPOINT.xfs.img (default SIZE 20G;
#                                        only written blocks use disk), mkfs.xfs -m reflink=1,
#                                        mounted on MOUNTPOINT. Already mounted: nothing to do.
#   pool-xfs.sh down MOUNTPOINT          unmount and delete the image. Not mounted: only the
#                                        image (if any) is removed.
#
# Set IMAGE=/path/to/file.img to keep the image elsewhere. Point `local.pool_dir` at
# MOUNTPOINT (or a directory below it).
set -euo pipefail

say() { printf 'pool-xfs: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }

[ $# -ge 2 ] || usage
action=$1
mnt=$2
size=${3:-20G}
[[ $mnt == /* ]] || die "MOUNTPOINT must be an absolute path (got $mnt)"
mnt=${mnt%/}
image=${IMAGE:-$mnt.xfs.img}
[ "$(id -u)" = 0 ] || die "must run as root (mkfs.xfs, mount); try: sudo $0 $*"

mounted() { findmnt -n -M "$mnt" >/dev/null 2>&1; }

case $action in
up)
  command -v mkfs.xfs >/dev/null || die "mkfs.xfs not found: apt-get install xfsprogs"
  [[ $size =~ ^[0-9]+[KMGT]?$ ]] || die "SIZE must look like 20G (got $size)"
  if mounted; then
    fstype=$(findmnt -n -o FSTYPE -M "$mnt")
    [ "$fstype" = xfs ] || die "$mnt is already a mount point, of $fstype"
    say "$mnt is already mounted (xfs); nothing to do"
    exit 0
  fi
  [ ! -e "$image" ] || die "$image exists but is not mounted on $mnt; run '$0 down $mnt' first"
  mkdir -p "$mnt" "$(dirname "$image")"
  truncate -s "$size" "$image"
  # From here on, undo everything if a step fails: no half-made pool.
  trap 'umount "$mnt" 2>/dev/null || true; rm -f "$image"; say "failed; cleaned up"' ERR
  mkfs.xfs -q -m reflink=1 "$image"
  mount -o loop "$image" "$mnt"
  chmod 0755 "$mnt"
  trap - ERR
  say "XFS (reflink=1) pool of $size mounted on $mnt (image $image, device $(findmnt -n -o SOURCE -M "$mnt"))"
  ;;
down)
  if mounted; then
    # Refuse while anything still uses it: those are someone's servers.
    if command -v fuser >/dev/null; then
      users=$(fuser -m "$mnt" 2>/dev/null || true)
      [ -z "${users// /}" ] || die "$mnt is in use by pids$users; stop them first"
    fi
    umount "$mnt"
    say "unmounted $mnt"
  fi
  rm -f "$image"
  rmdir "$mnt" 2>/dev/null || true
  say "removed $image"
  ;;
*) usage ;;
esac
