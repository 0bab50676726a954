#!/usr/bin/env bash
# build.sh — the replica image, built here from the same Ansible role Packer runs.
#
#   build.sh [--check-idempotent] NODE_BINARY
#
# 0. base (cached by the package list and mirror): an mmdebstrap Debian bookworm root;
# 1. root (cached by a hash of its inputs: this script, the role, the bootstrap script,
#    the secrets file): a copy of the base, the role applied through Ansible's chroot
#    connection, kernel + initrd copied out for a direct boot;
# 2. image (cached by root + NODE_BINARY, the `pgsurge` CLI the first-boot unit runs):
#    the role's `node_binary` task installs it, then `mkfs.ext4 -d` makes the raw disk
#    (no loop mount).
# Cache: $PGSURGE_IMAGE_CACHE (default /var/cache/pgsurge/image), outside the clone so a
# fresh clone reuses it. Everything is built under a temporary name and renamed into
# place, so a killed build leaves nothing a later run would adopt.
# --check-idempotent: apply the role once more to the cached root and print its recap
# (the test asserts changed=0).
# Secrets: $PGSURGE_IMAGE_SECRETS, a YAML file (ansible-vault encrypted or not; with
# $PGSURGE_VAULT_PASSWORD_FILE when encrypted) defining pgsurge_replication_password.
# Output (stdout): KEY=VALUE lines ROOT, IMAGE, KERNEL, INITRD, CACHED.
# Needs root (mmdebstrap --mode=root, chroot) and infra/local/deps.sh's packages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
check=no
if [ "${1:-}" = --check-idempotent ]; then check=yes; shift; fi
binary=${1:?usage: build.sh [--check-idempotent] NODE_BINARY}
[ -x "$binary" ] || { echo "build.sh: $binary is not an executable" >&2; exit 2; }
secrets=${PGSURGE_IMAGE_SECRETS:?set PGSURGE_IMAGE_SECRETS to the secrets YAML (pgsurge_replication_password)}
[ -r "$secrets" ] || { echo "build.sh: cannot read $secrets" >&2; exit 2; }
cache=${PGSURGE_IMAGE_CACHE:-/var/cache/pgsurge/image}
mirror=${PGSURGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
for tool in mmdebstrap ansible-playbook mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool missing (run infra/local/deps.sh)" >&2; exit 2; }
done
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

vault=()
[ -n "${PGSURGE_VAULT_PASSWORD_FILE:-}" ] && vault=(--vault-password-file "$PGSURGE_VAULT_PASSWORD_FILE")
# Packages mmdebstrap installs up front (one resolver run); the role lists what a replica
# needs and finds them there. python3(-apt): Ansible's modules run inside the root.
include=systemd-sysv,udev,dbus,kmod,linux-image-cloud-amd64,initramfs-tools,python3,python3-apt,postgresql-15,prometheus-postgres-exporter,e2fsprogs,iproute2,ca-certificates

base_key=$(echo "$include $mirror" | sha256sum | cut -c1-16)
base=$cache/base-$base_key
key=$( { cat "$0" "$here/bootstrap-replica.sh" "$secrets"; echo "$include $mirror";
         find "$here/ansible" -type f -print0 | sort -z | xargs -0 cat; } | sha256sum | cut -c1-16)
root=$cache/$key
play() { # play ROOTFS [ansible-playbook args...] — the role through the chroot connection
  local rootfs=$1; shift
  local inv; inv=$(mktemp)
  echo "rootfs ansible_connection=community.general.chroot ansible_host=$rootfs ansible_python_interpreter=/usr/bin/python3" >"$inv"
  ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_HOST_KEY_CHECKING=0 \
    ansible-playbook -i "$inv" "$here/ansible/playbook.yml" -e "@$secrets" "${vault[@]}" "$@"
  local rc=$?; rm -f "$inv"; return $rc
}

cached=yes
if [ ! -f "$root/done" ]; then
  cached=no
  t0=$(date +%s)
  work=$cache/tmp.$key.$$
  rm -rf "$cache"/tmp.* # leftovers of killed builds (we hold the lock)
  mkdir -p "$work"
  if [ ! -f "$base/done" ]; then
    rm -rf "$base"
    mmdebstrap --variant=minbase --mode=root --include="$include" \
      --customize-hook='printf "/dev/vda / ext4 rw,relatime 0 1\n" > "$1/etc/fstab"' \
      --customize-hook='echo pgsurge-replica > "$1/etc/hostname"' \
      bookworm "$work/base" "$mirror" >&2
    mkdir -p "$base"
    mv "$work/base" "$base/rootfs"
    touch "$base/done"
  fi
  cp -a --reflink=auto "$base/rootfs" "$work/rootfs"
  t1=$(date +%s)
  play "$work/rootfs" >"$work/role-first.log" 2>&1 || { cat "$work/role-first.log" >&2; exit 1; }
  t2=$(date +%s)
  cp -L "$work/rootfs/vmlinuz" "$work/vmlinuz"
  cp -L "$work/rootfs/initrd.img" "$work/initrd.img"
  echo "mmdebstrap+copy $((t1 - t0)) s, role $((t2 - t1)) s" >"$work/timings"
  touch "$work/done"
  rm -rf "$root"
  mv "$work" "$root"
  echo "build.sh: root $key built ($(cat "$root/timings"))" >&2
fi

if [ "$check" = yes ]; then
  play "$root/rootfs" >"$root/role-again.log" 2>&1 || { cat "$root/role-again.log" >&2; exit 1; }
  sed -n '/PLAY RECAP/,$p' "$root/role-again.log" >&2
fi

bin_key=$(sha256sum "$binary" | cut -c1-16)
image=$root/image-$bin_key.raw
if [ ! -f "$image" ]; then
  cached=no
  play "$root/rootfs" --tags node_binary -e "pgsurge_node_binary=$(readlink -f "$binary")" \
    >"$root/role-binary.log" 2>&1 || { cat "$root/role-binary.log" >&2; exit 1; }
  # Older images of this root are for other binaries: drop them (they are 2 GB sparse).
  rm -f "$root"/image-*.raw "$root"/tmp-*.raw
  mkfs.ext4 -q -F -L rootfs -d "$root/rootfs" "$root/tmp-$bin_key.raw" 2G
  mv "$root/tmp-$bin_key.raw" "$image"
fi
echo "ROOT=$root"
echo "IMAGE=$image"
echo "KERNEL=$root/vmlinuz"
echo "INITRD=$root/initrd.img"
echo "CACHED=$cached"
