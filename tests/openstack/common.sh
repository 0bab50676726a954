# common.sh — sourced by up.sh and down.sh: where the test cloud keeps its state, and the
# pidfile helpers. Everything the test cloud writes lives under $OS_DIR except the
# service configuration files in /etc/{keystone,placement,nova,cinder,glance,neutron},
# which the Debian python packages read by default (rewritten by every up.sh).

# A clean environment: `python3` on PATH may be a pyenv shim without the Debian
# OpenStack packages, and a stray PYTHONPATH would shadow them.
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH PYTHONHOME PYTHONDONTWRITEBYTECODE VIRTUAL_ENV
export LC_ALL=C.UTF-8 HOME=${HOME:-/root}

OS_DIR=${PGSURGE_OS_DIR:-/tmp/pgsurge-openstack}
RUN=$OS_DIR/run      # pidfiles: one per process group we started
LOGS=$OS_DIR/logs
STATE=$OS_DIR/state  # databases, keys, markers of one-time steps
PY=/usr/bin/python3

# The qemu guests' network (see up.sh): a bridge inside this namespace, routed from here
# through a veth pair. TEST-NET ranges are avoided: this box's own uplink may use them.
NETNS=pgsurge-os
VM_BRIDGE=br-vms
VM_CIDR=198.18.10.0/24
VM_GATEWAY=198.18.10.1
VETH_HOST=pgos0 VETH_NS=pgos1
VETH_HOST_IP=198.18.255.1 VETH_NS_IP=198.18.255.2

T0=${T0:-$(date +%s)}
log() { echo "[openstack $(date +%T) +$(( $(date +%s) - T0 ))s] $*" >&2; }
die() { echo "[openstack] ERROR: $*" >&2; exit 1; }

# alive NAME: the process recorded in NAME.pid is still running.
alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
