#!/usr/bin/env bash
# Install the Debian packages the demo and the tests use, when missing.
# As root: apt-get install. Otherwise: say exactly what to install, and fail.
set -euo pipefail
packages=(postgresql-15 postgresql-client-15 victoria-metrics curl time ceph-mon ceph-osd radosgw ceph-common openssl haproxy xfsprogs e2fsprogs psmisc python3
  # infra/observability checks (promtool, amtool, a real Prometheus, the exporters)
  prometheus prometheus-alertmanager prometheus-node-exporter prometheus-postgres-exporter
  # `just package` (zip, a venv for ziglang) and its glibc check (readelf)
  zip unzip binutils python3-venv
  # The replica image (infra/image): build (mmdebstrap + the role through Ansible's
  # chroot connection: `ansible` carries community.general), validate (packer), boot.
  mmdebstrap ansible packer genisoimage)
# qemu-system-x86 from bookworm-backports: the box carries qemu-utils from there, which
# bookworm's own qemu-system-x86 conflicts with.
backports=(qemu-system-x86 qemu-block-extra ipxe-qemu seabios)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
missing_bpo=()
for p in "${backports[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_bpo+=("$p")
done
[ ${#missing[@]} -eq 0 ] && [ ${#missing_bpo[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]} ${missing_bpo[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing_bpo[@]} -gt 0 ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    >/etc/apt/sources.list.d/bookworm-backports.sources
fi
# Another apt may hold the lock (unattended upgrades, a parallel job): wait for it.
apt-get -o DPkg::Lock::Timeout=600 update -qq
[ ${#missing[@]} -eq 0 ] || apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ ${#missing_bpo[@]} -eq 0 ] || apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends -t bookworm-backports "${missing_bpo[@]}" >/dev/null
# Debian's postinst creates and starts a default cluster; we never use it. Leave it alone.
