#!/usr/bin/env bash
# down.sh — stop the OpenStack test cloud: exactly the processes up.sh started, by the pids
# in $OS_DIR/run. Each was started with setsid, so its pid leads a process group (uwsgi
# workers, neutron children): the group gets SIGTERM, and SIGKILL after 15 s. State stays, so
# the next up.sh is a warm start; `down.sh --purge` also deletes $OS_DIR.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

# stop NAME...: signal each group, wait for all of them together, then force.
stop() {
  local n pid live=()
  for n in "$@"; do
    [ -f "$RUN/$n.pid" ] || continue
    pid=$(cat "$RUN/$n.pid")
    if kill -0 "$pid" 2>/dev/null; then
      # epmd was not started by us with setsid: signal the process alone
      if [ "$n" = epmd ]; then kill -TERM "$pid"; else kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"; fi
      live+=("$n:$pid")
    else
      rm -f "$RUN/$n.pid"
    fi
  done
  local i x any
  for ((i = 0; i < 30; i++)); do
    any=0
    for x in "${live[@]}"; do kill -0 "${x#*:}" 2>/dev/null && any=1; done
    [ $any = 0 ] && break
    sleep 0.5
  done
  for x in "${live[@]}"; do
    n=${x%%:*}; pid=${x#*:}
    if kill -0 "$pid" 2>/dev/null; then
      if [ "$n" = epmd ]; then kill -KILL "$pid"; else kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"; fi
      log "killed $n (pid $pid) after 15 s"
    else
      log "stopped $n (pid $pid)"
    fi
    rm -f "$RUN/$n.pid"
  done
}

[ -d "$RUN" ] || { log "nothing to stop ($RUN does not exist)"; exit 0; }
# services first (they hold DB and AMQP connections), then the broker, then the database
# the qemu guests our test driver started (qemu daemonizes into its own session: the
# compute's process group does not hold them): by their pidfiles
for pf in "$STATE"/nova/qemu-instances/*/qemu.pid; do
  [ -f "$pf" ] || continue
  pid=$(cat "$pf")
  if kill -0 "$pid" 2>/dev/null && grep -q qemu "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid"; log "stopped guest qemu (pid $pid)"
  fi
done
stop nova-compute nova-compute-qemu nova-api nova-scheduler nova-conductor neutron-server glance-api \
     cinder-api cinder-volume cinder-scheduler placement keystone designate-api designate-central \
     aodh-api aodh-listener aodh-notifier ceilometer-notification
stop rabbitmq
stop epmd
stop mariadb
rm -f "$RUN/mariadbd.own.pid"
if ip netns list | grep -qw "$NETNS"; then
  ip route del "$VM_CIDR" via "$VETH_NS_IP" 2>/dev/null || true
  ip netns del "$NETNS" && log "deleted network namespace $NETNS"   # takes the veth pair with it
fi
if [ "${1:-}" = --purge ]; then rm -rf "$OS_DIR"; log "purged $OS_DIR"; fi
log "down in $(( $(date +%s) - T0 )) s"
