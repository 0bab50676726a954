#!/usr/bin/env bash
# up.sh — bring up pgsurge's OpenStack test cloud: a real OpenStack Zed control plane from
# Debian 12 packages, on 127.0.0.1 only.
#
#   MariaDB, RabbitMQ, Keystone, Placement, Nova (api, conductor, scheduler, and two computes:
#   os-compute1 with the fake virt driver, os-qemu1 with our test driver that boots real
#   qemu guests — availability zone `qemu`), Cinder (api, scheduler, volume with two
#   backends: the fake driver for the default volume type, and the real RBD driver on the
#   project's test Ceph for volume type `rbd`), Glance API and Neutron API (ML2 with our
#   bind-everything mechanism driver, no agents), Designate API + central (fake pool
#   target: records live in Designate's database only).
#
#   The guests' network (Neutron network `pgsurge-vms`, 198.18.10.0/24, no DHCP: addresses
#   come from the config drive) is a bridge inside the network namespace `pgsurge-os`,
#   never in the root namespace; a veth pair (198.18.255.1 here, .2 there) routes this
#   host's tests to the hosts inside it. See tests/openstack/nova/pgsurge_testvirt.py.
#
#   Needs the test Ceph running (infra/s3/rgw-up.sh; CEPH_CONF or $PGSURGE_CEPH_DIR to
#   find it): the RBD pool `pgsurge-volumes` is created on it.
#
# Idempotent: installs what is missing, starts what is not running (pidfiles in
# $OS_DIR/run), skips one-time steps already done. down.sh stops exactly what this started.
# When it returns 0 every API answers, nova-compute and cinder-volume are up, and
# $OS_DIR/clouds.yaml describes the users the tests use (see bootstrap.py).
#
# Needs root (apt-get, /etc). Usage: tests/openstack/up.sh   (PGSURGE_OS_DIR to relocate state)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"
[ "$(id -u)" -eq 0 ] || die "must run as root (installs Debian packages, writes /etc/<service>/); try: sudo $0"
mkdir -p "$RUN" "$LOGS" "$STATE"

PASS=pgsurge-test-secret   # every service and database password: a throwaway loopback cloud
ADMIN_PASS=admin
DB="mysql+pymysql://openstack:$PASS@127.0.0.1/"
RABBIT="rabbit://guest:guest@127.0.0.1:5672/"
KS=http://127.0.0.1:5000
COMPUTE_HOST=os-compute1
QEMU_HOST=os-qemu1
CEPH_CONF=${CEPH_CONF:-${PGSURGE_CEPH_DIR:-${TMPDIR:-/tmp}/pgsurge-ceph-${PGSURGE_S3_PORT:-22480}}/ceph.conf}
RBD_POOL=pgsurge-volumes

# ------------------------------------------------------------------ 1. packages
PKGS=(mariadb-server python3-pymysql rabbitmq-server uwsgi-core uwsgi-plugin-python3
      python3-keystone python3-keystoneclient python3-placement python3-nova python3-cinder
      python3-glance python3-neutron python3-designate python3-aodh python3-ceilometer curl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  # Without systemd the postinst scripts would start mariadb/rabbitmq on default
  # addresses; policy-rc.d exit 101 tells invoke-rc.d not to start anything.
  # Removed again right after (trap): left behind it would keep blocking every later
  # service start on this machine. One someone else put there is theirs: left alone.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    OUR_POLICY_RC=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # Only the python3-* libraries: the service packages (nova-compute, cinder-volume, ...)
  # drag in libvirt/qemu, LVM/tgt and debconf database prompts we do not want.
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >"$LOGS/apt.log" 2>&1 \
    || { tail -20 "$LOGS/apt.log" >&2; die "apt-get install failed (log: $LOGS/apt.log)"; }
  if [ "${OUR_POLICY_RC:-}" = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  log "packages installed"
fi

# The paste pipelines (api-paste.ini) ship in the *-common packages, which we do not install
# (they pull dbconfig-common): unpack just those files from the .debs.
DEBS=$STATE/debs
if [ ! -f "$DEBS/.done" ] || [ ! -f "$DEBS/usr/share/designate-common/api-paste.ini" ]; then
  rm -rf "$DEBS"; mkdir -p "$DEBS"
  (cd "$DEBS" && apt-get download nova-common cinder-common glance-common neutron-common designate-common >"$LOGS/apt-download.log" 2>&1 \
     && for f in ./*.deb; do dpkg-deb -x "$f" .; done) || die "cannot fetch the *-common .debs (log: $LOGS/apt-download.log)"
  touch "$DEBS/.done"
fi

# ------------------------------------------------------------------ 2. configuration
mkdir -p /etc/keystone /etc/placement /etc/nova /etc/cinder /etc/glance /etc/neutron /etc/designate \
  "$STATE"/{fernet-keys,credential-keys,locks,nova/instances,cinder,glance/images,glance/staging,neutron,wsgi}
install -m644 "$DEBS/usr/share/nova-common/api-paste.ini" /etc/nova/api-paste.ini
install -m644 "$DEBS/usr/share/cinder-common/api-paste.ini" /etc/cinder/api-paste.ini
install -m644 "$DEBS/usr/share/glance-common/glance-api-paste.ini" /etc/glance/glance-api-paste.ini
install -m644 "$DEBS/usr/share/neutron-common/api-paste.ini" /etc/neutron/api-paste.ini
install -m644 "$DEBS/usr/share/designate-common/api-paste.ini" /etc/designate/api-paste.ini

# keystonemiddleware section: how a service validates the tokens it receives.
authtoken() { cat <<EOF
[keystone_authtoken]
www_authenticate_uri = $KS
auth_url = $KS
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $PASS
service_token_roles_required = false
# validated tokens are cached 5 s (default 300): a revoked token is refused soon after
# (the token-renewal test revokes one) while most calls still skip the extra Keystone call
token_cache_time = 5
EOF
}
# keystoneauth section: how a service calls another one.
svc_auth() { cat <<EOF
[$1]
auth_type = password
auth_url = $KS/v3
project_name = service
project_domain_name = Default
user_domain_name = Default
username = $2
password = $PASS
region_name = RegionOne
EOF
}
# common_tail [DRIVER]: notifications off (noop) unless a service's must reach Ceilometer.
common_tail() { cat <<EOF
[oslo_concurrency]
lock_path = $STATE/locks
[oslo_messaging_notifications]
driver = ${1:-noop}
EOF
}

cat >/etc/keystone/keystone.conf <<EOF
[DEFAULT]
log_file = $LOGS/keystone.log
[database]
connection = ${DB}keystone
[token]
provider = fernet
[fernet_tokens]
key_repository = $STATE/fernet-keys
[credential]
key_repository = $STATE/credential-keys
EOF

cat >/etc/placement/placement.conf <<EOF
[DEFAULT]
log_file = $LOGS/placement.log
[api]
auth_strategy = keystone
[placement_database]
connection = ${DB}placement
$(authtoken placement)
EOF

cat >/etc/nova/nova.conf <<EOF
[DEFAULT]
host = $COMPUTE_HOST
my_ip = 127.0.0.1
my_block_storage_ip = 127.0.0.1
transport_url = $RABBIT
compute_driver = fake.FakeDriver
state_path = $STATE/nova
instances_path = $STATE/nova/instances
log_dir = $LOGS
enabled_apis = osapi_compute
osapi_compute_listen = 127.0.0.1
osapi_compute_workers = 1
# Servers that name no zone stay on the fake compute (zone nova); the qemu compute
# (zone qemu) runs only what asks for it.
default_schedule_zone = nova
# Build one server at a time on the (one) compute host: fewer concurrent port updates for
# neutron (see wsgi_default_pool_size in neutron.conf). The API calls stay parallel; only
# the fake build behind them queues (each takes well under a second).
max_concurrent_builds = 1
# the fake driver never plugs a VIF, so neutron never sends network-vif-plugged
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
[api]
auth_strategy = keystone
[api_database]
connection = ${DB}nova_api
[database]
connection = ${DB}nova
$(authtoken nova)
$(svc_auth placement nova)
$(svc_auth neutron nova)
service_metadata_proxy = false
[cinder]
os_region_name = RegionOne
catalog_info = volumev3::publicURL
auth_type = password
auth_url = $KS/v3
project_name = service
project_domain_name = Default
user_domain_name = Default
username = nova
password = $PASS
# Cinder (CVE-2023-2088 fix) lets Nova delete a Nova-owned attachment only with a service
# token from a user holding the 'service' role; without it deleted servers leave their
# volumes 'in-use' forever.
[service_user]
send_service_user_token = true
auth_type = password
auth_url = $KS/v3
project_name = service
project_domain_name = Default
user_domain_name = Default
username = nova
password = $PASS
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 5
[filter_scheduler]
# One fake compute host: no (anti-)affinity filter, or a hard anti-affinity group of three
# could never be placed. Soft anti-affinity is a weigher and still applies.
enabled_filters = AvailabilityZoneFilter,ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
[vnc]
enabled = false
[spice]
enabled = false
# Nova's legacy notifications go to Ceilometer (events -> Aodh event alarms)
[notifications]
notification_format = unversioned
$(common_tail messagingv2)
EOF

cat >/etc/cinder/cinder.conf <<EOF
[DEFAULT]
host = os-volume1
my_ip = 127.0.0.1
transport_url = $RABBIT
auth_strategy = keystone
state_path = $STATE/cinder
log_dir = $LOGS
api_paste_config = /etc/cinder/api-paste.ini
osapi_volume_listen = 127.0.0.1
osapi_volume_workers = 1
enabled_backends = fake,rbd
default_volume_type = __DEFAULT__
[database]
connection = ${DB}cinder
$(authtoken cinder)
$(svc_auth nova nova)
[fake]
# Debian's python3-cinder ships the fake driver: infinite capacity, every storage call a
# no-op, the API and state machine real.
volume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver
volume_backend_name = fake
target_helper = fake
[rbd]
# The real RBD driver on the test Ceph (cephx off): volumes hold bytes, snapshots are RBD
# snapshots and volumes from them copy-on-write clones (not flattened), as on the many
# OpenStack clouds that run Ceph. Volume type "rbd" (bootstrap.py) selects it.
volume_driver = cinder.volume.drivers.rbd.RBDDriver
volume_backend_name = rbd
# Nova's zone of the qemu compute: a clone boots in its volume's zone (as pgsurge does on
# clouds where Cinder's and Nova's zones share names)
backend_availability_zone = qemu
rbd_pool = $RBD_POOL
rbd_ceph_conf = $CEPH_CONF
rbd_user = admin
rbd_flatten_volume_from_snapshot = false
rbd_max_clone_depth = 5
rados_connect_timeout = 10
$(common_tail)
EOF

cat >/etc/glance/glance-api.conf <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9292
workers = 1
log_file = $LOGS/glance-api.log
[database]
connection = ${DB}glance
$(authtoken glance)
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
[glance_store]
stores = file
default_store = file
filesystem_store_datadir = $STATE/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $STATE/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $STATE/glance/staging
$(common_tail)
EOF

# Neutron: API and database only (no agents). Nova Zed needs it even for servers with no
# network: server show/list read security groups from it, delete deallocates through it.
cat >/etc/neutron/neutron.conf <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9696
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = $RABBIT
api_workers = 0
# one request at a time: neutron 21 without agents intermittently breaks concurrent
# requests of one project ("'NoneType' object has no attribute 'flush'" in
# _ensure_default_security_group => HTTP 500 to Nova). Its calls take milliseconds. With a
# single green thread an idle keep-alive connection would block everyone: close after each.
wsgi_default_pool_size = 1
wsgi_keep_alive = false
client_socket_timeout = 10
rpc_workers = 0
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
api_paste_config = /etc/neutron/api-paste.ini
state_path = $STATE/neutron
log_file = $LOGS/neutron-server.log
[database]
connection = ${DB}neutron
$(authtoken neutron)
[ml2]
type_drivers = flat
tenant_network_types =
# our own driver (tests/openstack/neutron/): binds every port, so servers get real ports
# and fixed IPs on a network without any agent
mechanism_drivers = pgsurge_bind_all
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[securitygroup]
firewall_driver = noop
$(common_tail)
EOF

# Designate: API and central only. Zones and recordsets are real API objects in its
# database; with no worker/mdns/DNS server they stay PENDING, which is all the adapter's
# API use needs (create, list, update, delete records).
cat >/etc/designate/designate.conf <<EOF
[DEFAULT]
transport_url = $RABBIT
log_dir = $LOGS
[service:api]
listen = 127.0.0.1:9001
api_base_uri = http://127.0.0.1:9001/
auth_strategy = keystone
enable_api_v2 = True
workers = 1
[service:central]
workers = 1
[storage:sqlalchemy]
connection = ${DB}designate
$(authtoken designate)
$(common_tail)
EOF
cat >/etc/designate/pools.yaml <<EOF
- name: default
  description: "pgsurge test pool, fake target"
  attributes: {}
  ns_records:
    - hostname: ns1.pgsurge.test.
      priority: 1
  nameservers:
    - host: 127.0.0.1
      port: 5399
  targets:
    - type: fake
      description: "no DNS server behind it"
      masters:
        - host: 127.0.0.1
          port: 5354
      options: {}
EOF

# The second compute: real qemu guests (tests/openstack/nova/pgsurge_testvirt.py), read
# after nova.conf so only these keys differ.
mkdir -p "$STATE/nova/qemu-instances"
cat >/etc/nova/nova-qemu.conf <<EOF
[DEFAULT]
host = $QEMU_HOST
compute_driver = pgsurge_testvirt.QemuNetnsDriver
instances_path = $STATE/nova/qemu-instances
# each guest is a TCG qemu (a core while it boots): the driver refuses a 4th
max_concurrent_builds = 3
# the guest learns its fixed address, user data and metadata from Nova's config drive
force_config_drive = true
EOF
cat >/etc/nova/pgsurge-testvirt.json <<EOF
{"instances_path": "$STATE/nova/qemu-instances", "netns": "$NETNS", "bridge": "$VM_BRIDGE",
 "ceph_conf": "$CEPH_CONF", "ceph_user": "admin", "qemu": "qemu-system-x86_64",
 "max_servers": 3, "fail_spawn_marker": "$STATE/nova/fail-spawn"}
EOF

# Aodh (api, listener, notifier) and Ceilometer's notification agent: Nova's legacy
# notifications (compute.instance.delete.end, ...) become Ceilometer events, published
# on the topic Aodh's listener evaluates event alarms from; aodh-notifier POSTs the
# alarm's action, as on a cloud with event alarms.
mkdir -p /etc/aodh /etc/ceilometer
cat >/etc/aodh/aodh.conf <<EOF
[DEFAULT]
transport_url = $RABBIT
log_dir = $LOGS
[api]
host = 127.0.0.1
port = 8042
auth_mode = keystone
[database]
connection = ${DB}aodh
$(authtoken aodh)
$(svc_auth service_credentials aodh)
interface = public
[listener]
event_alarm_topic = alarm.all
workers = 1
[notifier]
workers = 1
[evaluator]
workers = 1
$(common_tail)
EOF
cat >/etc/ceilometer/ceilometer.conf <<EOF
[DEFAULT]
transport_url = $RABBIT
log_dir = $LOGS
[notification]
workers = 1
# events only: no meters (they would need Gnocchi)
pipelines = event
[publisher_notifier]
event_topic = alarm.all
$(svc_auth service_credentials ceilometer)
interface = public
$(common_tail)
EOF
cat >/etc/ceilometer/event_pipeline.yaml <<EOF
---
sources:
    - name: event_source
      events:
          - "*"
      sinks:
          - event_sink
sinks:
    - name: event_sink
      publishers:
          - notifier://?topic=alarm.all
EOF
cp /usr/lib/python3/dist-packages/ceilometer/pipeline/data/event_definitions.yaml /etc/ceilometer/event_definitions.yaml

# WSGI entry points (the packaged *-wsgi scripts come with the service packages).
W=$STATE/wsgi
printf 'from nova.api.openstack.compute.wsgi import init_application\napplication = init_application()\n' >"$W/nova-api.py"
printf 'from cinder.wsgi.wsgi import initialize_application\napplication = initialize_application()\n' >"$W/cinder-api.py"
printf 'from placement.wsgi import init_application\napplication = init_application()\n' >"$W/placement-api.py"
printf 'from aodh.api import app\napplication = app.build_wsgi_app(argv=[])\n' >"$W/aodh-api.py"

# ------------------------------------------------------------------ helpers
# start NAME CMD...: run CMD in its own session (so down.sh can signal the whole group),
# record its pid, unless NAME is already running.
start() {
  local n=$1; shift
  if alive "$n"; then log "$n already running (pid $(cat "$RUN/$n.pid"))"; return; fi
  setsid "$@" >>"$LOGS/$n.out" 2>&1 </dev/null &
  echo $! >"$RUN/$n.pid"
  log "started $n (pid $!)"
}
# daemon NAME MODULE CONF [PRELUDE]: an oslo service run as `python3 -c` (no wrapper script
# from the service packages), explicit config and log file.
daemon() {
  start "$1" $PY -c "import sys; sys.argv=['$1','--config-file','$3','--log-file','$LOGS/$1.log']; ${4:-}from $2 import main; main()"
}
# wsgi NAME PORT FILE: a WSGI app under uwsgi on loopback. uwsgi's http-socket resets pooled
# keep-alive connections at random, so every answer says `Connection: close`.
# PROCS/THREADS (default 1/4) per service: see nova-api below.
wsgi() {
  start "$1" uwsgi-core --plugin python3 --http-socket "127.0.0.1:$2" --wsgi-file "$3" \
    --master --processes "${PROCS:-1}" --threads "${THREADS:-4}" --buffer-size 65535 --die-on-term --need-app \
    --thunder-lock --enable-threads --add-header "Connection: close" --procname-prefix "$1-"
}
# wait_http URL SECS NAME
wait_http() {
  local i
  for ((i = 0; i < $2 * 2; i++)); do
    curl -s -o /dev/null -m 3 "$1" && return 0
    alive "$3" || die "$3 died while starting; see $LOGS/$3.log and $LOGS/$3.out"
    sleep 0.5
  done
  die "$3 did not answer on $1 within $2 s; see $LOGS/$3.log"
}
manage() { local m=$1; shift; $PY -c "import sys; sys.argv=['manage']+sys.argv[1:]; from $m import main; sys.exit(main())" "$@"; }
once() { # once NAME CMD...: run a one-time step (schema sync) unless already done
  local n=$1; shift
  [ -f "$STATE/$n.done" ] && return 0
  "$@" >>"$LOGS/$n-setup.log" 2>&1 || { tail -20 "$LOGS/$n-setup.log" >&2; die "$n setup failed (log: $LOGS/$n-setup.log)"; }
  touch "$STATE/$n.done"; log "$n: schema ready"
}

# ------------------------------------------------------------------ 2b. Ceph pool, guest network
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (run infra/local/deps.sh)"
[ -r "$CEPH_CONF" ] || die "no test Ceph at $CEPH_CONF: start it first (infra/s3/rgw-up.sh), or set CEPH_CONF"
timeout 20 ceph -c "$CEPH_CONF" health >/dev/null 2>&1 || die "the test Ceph ($CEPH_CONF) does not answer: infra/s3/rgw-up.sh"
# Both steps are idempotent, so they run every time (a run killed between them is completed)
# and are retried: the ceph CLI has once (CI, stop 24) failed a pool create on a just-started
# cluster, and a retry is cheaper than a red run. The last error is shown, not swallowed.
rbd_pool_ready() {
  local i out=""
  for ((i = 1; i <= 5; i++)); do
    if out=$(timeout 60 ceph -c "$CEPH_CONF" osd pool create "$RBD_POOL" 8 2>&1) &&
      out=$(timeout 60 rbd -c "$CEPH_CONF" pool init "$RBD_POOL" 2>&1) &&
      timeout 30 ceph -c "$CEPH_CONF" osd pool application get "$RBD_POOL" rbd >/dev/null 2>&1; then
      return 0
    fi
    log "RBD pool $RBD_POOL not ready (try $i of 5): ${out:-no output}"
    sleep 3
  done
  die "cannot create the RBD pool $RBD_POOL on $CEPH_CONF: ${out:-no output} (Ceph logs: $(dirname "$CEPH_CONF"))"
}
rbd_pool_ready
# The guests' L2 network lives in its own namespace: a bridge (its gateway address is the
# namespace itself) and a veth pair to this host for the tests' traffic.
# Each step on its own, so a half-made network (a killed run) is completed, not refused.
ip netns list | grep -qw "$NETNS" || { ip netns add "$NETNS"; log "network namespace $NETNS created"; }
ip -n "$NETNS" link set lo up
ip -n "$NETNS" link show "$VM_BRIDGE" >/dev/null 2>&1 || ip -n "$NETNS" link add "$VM_BRIDGE" type bridge
ip -n "$NETNS" addr replace "$VM_GATEWAY/24" dev "$VM_BRIDGE"
ip -n "$NETNS" link set "$VM_BRIDGE" up
if ! ip -n "$NETNS" link show "$VETH_NS" >/dev/null 2>&1; then
  # a host end left over from a namespace deleted before (its teardown is lazy)
  ip link del "$VETH_HOST" 2>/dev/null || true
  ip link add "$VETH_HOST" type veth peer name "$VETH_NS" netns "$NETNS"
fi
ip addr replace "$VETH_HOST_IP/30" dev "$VETH_HOST"
ip link set "$VETH_HOST" up
ip -n "$NETNS" addr replace "$VETH_NS_IP/30" dev "$VETH_NS"
ip -n "$NETNS" link set "$VETH_NS" up
ip netns exec "$NETNS" sysctl -qw net.ipv4.ip_forward=1
ip route replace "$VM_CIDR" via "$VETH_NS_IP" dev "$VETH_HOST"

# ------------------------------------------------------------------ 3. MariaDB (own datadir)
SOCK=$RUN/mariadb.sock
cat >"$STATE/my.cnf" <<EOF
[mysqld]
user = root
datadir = $STATE/mysql
socket = $SOCK
pid-file = $RUN/mariadbd.own.pid
bind-address = 127.0.0.1
port = 3306
skip-name-resolve
max_connections = 1000
innodb_buffer_pool_size = 64M
innodb_flush_log_at_trx_commit = 2
performance_schema = off
log-error = $LOGS/mariadb.err
character-set-server = utf8
collation-server = utf8_general_ci
EOF
if [ ! -d "$STATE/mysql/mysql" ]; then
  mariadb-install-db --defaults-file="$STATE/my.cnf" --user=root >"$LOGS/mariadb-install.log" 2>&1 \
    || die "mariadb-install-db failed (log: $LOGS/mariadb-install.log)"
fi
start mariadb mariadbd --defaults-file="$STATE/my.cnf"
for ((i = 0; i < 120; i++)); do
  mariadb -S "$SOCK" -uroot -e 'select 1' >/dev/null 2>&1 && break
  alive mariadb || die "mariadb died; see $LOGS/mariadb.err"
  sleep 0.5
done
mariadb -S "$SOCK" -uroot <<EOF
CREATE USER IF NOT EXISTS 'openstack'@'127.0.0.1' IDENTIFIED BY '$PASS';
CREATE USER IF NOT EXISTS 'openstack'@'localhost' IDENTIFIED BY '$PASS';
$(for d in keystone placement nova_api nova nova_cell0 cinder glance neutron designate aodh; do
  echo "CREATE DATABASE IF NOT EXISTS $d; GRANT ALL ON $d.* TO 'openstack'@'127.0.0.1'; GRANT ALL ON $d.* TO 'openstack'@'localhost';"
done)
FLUSH PRIVILEGES;
EOF
log "mariadb ready"

# ------------------------------------------------------------------ 4. RabbitMQ (loopback: node, epmd, distribution)
mkdir -p "$STATE/rabbitmq"
printf 'listeners.tcp.default = 127.0.0.1:5672\nloopback_users.guest = true\nlog.file.level = warning\n' >"$STATE/rabbitmq/rabbitmq.conf"
echo '[].' >"$STATE/rabbitmq/enabled_plugins"   # the trailing dot matters
export RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
  RABBITMQ_CONFIG_FILE="$STATE/rabbitmq/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$STATE/rabbitmq/enabled_plugins" \
  RABBITMQ_MNESIA_BASE="$STATE/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$LOGS/rabbitmq" RABBITMQ_DIST_PORT=25672 \
  ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
  RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
if ! alive rabbitmq; then
  epmd_before=$(ss -ltnpH 'sport = :4369' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
  # the server script itself, not the /usr/sbin wrapper (which drops this environment)
  start rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server
  for ((i = 0; i < 240; i++)); do
    (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break
    alive rabbitmq || die "rabbitmq died; see $LOGS/rabbitmq.out"
    sleep 0.5
  done
  # epmd is started by the Erlang VM and outlives it: record it only if we caused it.
  epmd_now=$(ss -ltnpH 'sport = :4369' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
  if [ -z "$epmd_before" ] && [ -n "$epmd_now" ]; then echo "$epmd_now" >"$RUN/epmd.pid"; fi
fi
(exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || die "rabbitmq not listening on 127.0.0.1:5672"
log "rabbitmq ready"

# ------------------------------------------------------------------ 5. Keystone
keystone_setup() {
  keystone-manage db_sync
  keystone-manage fernet_setup --keystone-user root --keystone-group root
  keystone-manage credential_setup --keystone-user root --keystone-group root
  keystone-manage bootstrap --bootstrap-password "$ADMIN_PASS" --bootstrap-admin-url $KS/v3/ \
    --bootstrap-internal-url $KS/v3/ --bootstrap-public-url $KS/v3/ --bootstrap-region-id RegionOne
}
once keystone keystone_setup
wsgi keystone 5000 /usr/bin/keystone-wsgi-public
wait_http $KS/v3 120 keystone
log "keystone answers"
# Users, roles and the catalog must exist before the services start: they authenticate at
# start-up (nova-conductor exits at once when its placement credentials fail).
bootstrap() {
  $PY "$HERE/bootstrap.py" --dir "$OS_DIR" --admin-password "$ADMIN_PASS" --service-password "$PASS" --vm-cidr "$VM_CIDR" --vm-gateway "$VM_GATEWAY" "$1" \
    2> >(tee -a "$LOGS/bootstrap.log" >&2) || die "bootstrap $1 failed (log: $LOGS/bootstrap.log)"
}
bootstrap identity

# ------------------------------------------------------------------ 6. schemas
once placement manage placement.cmd.manage --config-file /etc/placement/placement.conf db sync
nova_setup() {
  manage nova.cmd.manage api_db sync
  manage nova.cmd.manage cell_v2 map_cell0 --database_connection "${DB}nova_cell0"
  manage nova.cmd.manage cell_v2 list_cells | grep -q ' cell1 ' || manage nova.cmd.manage cell_v2 create_cell --name cell1
  manage nova.cmd.manage db sync
}
once nova nova_setup
once cinder manage cinder.cmd.manage db sync
once neutron $PY -c "import sys; sys.argv=['neutron-db-manage']+sys.argv[1:]; from neutron.db.migration.cli import main; sys.exit(main())" \
  --config-file /etc/neutron/neutron.conf upgrade heads
once glance manage glance.cmd.manage --config-file /etc/glance/glance-api.conf db_sync
once designate manage designate.cmd.manage --config-file /etc/designate/designate.conf database sync
once aodh $PY -c "import sys; sys.argv=['aodh-dbsync','--config-file','/etc/aodh/aodh.conf']; from aodh.cmd.storage import dbsync; dbsync()"

# ------------------------------------------------------------------ 7. services
SERVICES="mariadb rabbitmq keystone placement glance-api neutron-server nova-conductor nova-scheduler nova-api
cinder-scheduler cinder-volume cinder-api nova-compute nova-compute-qemu designate-central designate-api aodh-api aodh-listener aodh-notifier ceilometer-notification"
wsgi placement 8778 "$W/placement-api.py"
daemon glance-api glance.cmd.api /etc/glance/glance-api.conf
# With no service plugins, neutron 21's get_ports() touches the Port.port_forwardings
# backref, which only exists once its model is imported: import it before serving.
daemon neutron-server neutron.cmd.eventlet.server /etc/neutron/neutron.conf \
  "sys.path.insert(0, '$HERE/neutron'); import neutron.db.models.port_forwarding; "
daemon nova-conductor nova.cmd.conductor /etc/nova/nova.conf
daemon nova-scheduler nova.cmd.scheduler /etc/nova/nova.conf
# nova-api monkey-patches eventlet: with several threads per process a lock's waiter can be
# woken from another thread's hub ("greenlet.error: cannot switch to a different thread"),
# and the worker hangs for good with requests piling up (seen on a loaded box). One thread
# per process, two processes.
PROCS=2 THREADS=1 wsgi nova-api 8774 "$W/nova-api.py"
daemon cinder-scheduler cinder.cmd.scheduler /etc/cinder/cinder.conf
daemon cinder-volume cinder.cmd.volume /etc/cinder/cinder.conf
wsgi cinder-api 8776 "$W/cinder-api.py"
daemon designate-central designate.cmd.central /etc/designate/designate.conf
daemon designate-api designate.cmd.api /etc/designate/designate.conf
wsgi aodh-api 8042 "$W/aodh-api.py"
start aodh-listener $PY -c "import sys; sys.argv=['aodh-listener','--config-file','/etc/aodh/aodh.conf','--log-file','$LOGS/aodh-listener.log']; from aodh.cmd.alarm import listener; listener()"
start aodh-notifier $PY -c "import sys; sys.argv=['aodh-notifier','--config-file','/etc/aodh/aodh.conf','--log-file','$LOGS/aodh-notifier.log']; from aodh.cmd.alarm import notifier; notifier()"
start ceilometer-notification $PY -c "import sys; sys.argv=['ceilometer-agent-notification','--config-file','/etc/ceilometer/ceilometer.conf','--log-file','$LOGS/ceilometer-notification.log']; from ceilometer.cmd.agent_notification import main; main()"
wait_http http://127.0.0.1:8778/ 120 placement
daemon nova-compute nova.cmd.compute /etc/nova/nova.conf
# Nova loads compute_driver from the nova.virt package only: our driver's folder joins
# that package's path (after nova.cmd's eventlet monkey-patching, as in nova-compute).
start nova-compute-qemu $PY -c "import sys; import nova.cmd, nova.virt; nova.virt.__path__.append('$HERE/nova'); sys.argv=['nova-compute','--config-file','/etc/nova/nova.conf','--config-file','/etc/nova/nova-qemu.conf','--log-file','$LOGS/nova-compute-qemu.log']; from nova.cmd.compute import main; main()"
wait_http http://127.0.0.1:8774/ 180 nova-api
wait_http http://127.0.0.1:8776/ 180 cinder-api
wait_http http://127.0.0.1:9292/ 180 glance-api
wait_http http://127.0.0.1:9696/ 180 neutron-server
wait_http http://127.0.0.1:9001/ 180 designate-api
wait_http http://127.0.0.1:8042/ 180 aodh-api
# the pool is loaded through designate-central (RPC), so only once central runs
once designate-pool manage designate.cmd.manage --config-file /etc/designate/designate.conf pool update --file /etc/designate/pools.yaml
log "all APIs answer"

# ------------------------------------------------------------------ 8. flavors, quotas, network, test identities
# One python process with keystoneauth: idempotent, and far faster than many CLI calls.
# It also waits for nova-compute / cinder-volume to report up.
bootstrap resources
# map the compute host into cell1 now rather than at the scheduler's next periodic run
manage nova.cmd.manage cell_v2 discover_hosts >>"$LOGS/nova-discover.log" 2>&1 || die "discover_hosts failed"
for n in $SERVICES; do alive "$n" || die "$n is not running; see $LOGS/$n.log and $LOGS/$n.out"; done
log "UP in $(( $(date +%s) - T0 )) s — clouds.yaml: $OS_DIR/clouds.yaml"
