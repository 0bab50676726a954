"""A test-only Nova virt driver for pgsurge's test cloud: servers that really boot.

Nova's libvirt driver would need libvirt's network plumbing (OVS or a bridge in the root
network namespace) and a Cinder backend it attaches through libvirt secrets; this box's
rule is that a VM network with private addresses lives only inside a network namespace
the test made. So this driver does what libvirt would, with qemu directly:

* the boot disk: the Glance image (fetched once per image into ``_base``, Nova's own
  ``images.fetch``), a qcow2 overlay per server; a direct kernel boot when the image
  names ``kernel_id``/``ramdisk_id`` (the AMI convention Nova keeps on the instance) and
  ``os_command_line``;
* every volume in ``block_device_info`` with Cinder's connection info: ``rbd`` volumes
  (Cinder's RBD driver on the test Ceph) through qemu's rbd driver, the volume id as the
  disk's serial, as libvirt does;
* the config drive Nova itself builds (``ConfigDriveBuilder`` over ``InstanceMetadata``:
  ``meta_data.json``, ``user_data``, ``network_data.json``), attached like libvirt does;
* one tap per VIF with the port's MAC: created here, attached to qemu, then moved into
  the test's network namespace and its bridge. qemu itself stays in the root namespace
  (it reaches Ceph on loopback); the guest's traffic exists only inside the namespace.

Everything else (the instance bookkeeping Nova asks of a driver, resources) is
``FakeDriver``'s. Settings: ``/etc/nova/pgsurge-testvirt.json`` (written by up.sh).
A fault for tests: when the file named by ``fail_spawn_marker`` exists, spawn fails
(Nova then puts the server in ERROR), so the roll-back path meets a real ERROR.
"""
import json
import os
import shutil
import signal
import time

from oslo_concurrency import lockutils
from oslo_concurrency import processutils
from oslo_log import log as logging

from nova import exception
from nova.api.metadata import base as instance_metadata
from nova.compute import power_state
from nova.virt import configdrive
from nova.virt import fake
from nova.virt import images

LOG = logging.getLogger(__name__)
SETTINGS = '/etc/nova/pgsurge-testvirt.json'


def _run(*cmd):
    out, _ = processutils.execute(*cmd)
    return out


class QemuNetnsDriver(fake.FakeDriver):
    """FakeDriver's bookkeeping, with a real qemu guest behind every server."""

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        with open(SETTINGS) as f:
            self.cfg = json.load(f)
        self.root = self.cfg['instances_path']
        os.makedirs(os.path.join(self.root, '_base'), exist_ok=True)

    # ------------------------------------------------------------------ paths
    def _dir(self, instance):
        return os.path.join(self.root, instance.uuid)

    def _pidfile(self, instance):
        return os.path.join(self._dir(instance), 'qemu.pid')

    def _pid(self, instance):
        try:
            with open(self._pidfile(instance)) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ images
    def _base(self, context, image_id):
        """The Glance image as a local file, fetched once (lock: concurrent builds)."""
        path = os.path.join(self.root, '_base', image_id)
        with lockutils.lock('pgsurge-base-' + image_id, external=True,
                            lock_path=os.path.join(self.root, '_base')):
            if not os.path.exists(path):
                images.fetch(context, image_id, path + '.part')
                os.rename(path + '.part', path)
        return path

    @staticmethod
    def _format(path):
        info = json.loads(_run('qemu-img', 'info', '--output=json', path))
        return info['format']

    # ------------------------------------------------------------------ spawn
    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        marker = self.cfg.get('fail_spawn_marker')
        if marker and os.path.exists(marker):
            raise exception.InstanceDeployFailure(
                reason='test fault: %s exists' % marker, instance_id=instance.uuid)
        running = [u for u in self.instances if u != instance.uuid]
        if len(running) >= self.cfg.get('max_servers', 3):
            raise exception.InstanceDeployFailure(
                reason='this test host runs at most %d VMs' % self.cfg['max_servers'],
                instance_id=instance.uuid)
        d = self._dir(instance)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        try:
            cmd, taps = self._prepare(context, instance, image_meta, injected_files,
                                      admin_password, network_info, block_device_info, d)
            _run(*cmd)
            for tap in taps:
                self._plug(tap)
        except Exception:
            self._teardown(instance, network_info)
            raise
        LOG.info('qemu started (pid %s)', self._pid(instance), instance=instance)
        # FakeDriver records the instance (power state, resources, VIFs).
        super().spawn(context, instance, image_meta, injected_files, admin_password,
                      allocations, network_info, block_device_info, power_on, accel_info)

    def _prepare(self, context, instance, image_meta, injected_files, admin_password,
                 network_info, block_device_info, d):
        base = self._base(context, image_meta.id)
        disk = os.path.join(d, 'disk.qcow2')
        _run('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', self._format(base),
             '-b', base, disk)
        # The config drive Nova makes (what the libvirt driver does with it).
        inst_md = instance_metadata.InstanceMetadata(
            instance, content=injected_files,
            extra_md={'admin_pass': admin_password} if admin_password else {},
            network_info=network_info)
        config = os.path.join(d, 'disk.config')
        with configdrive.ConfigDriveBuilder(instance_md=inst_md) as cdb:
            cdb.make_drive(config)

        mem = max(int(instance.flavor.memory_mb), 512)
        cmd = [self.cfg.get('qemu', 'qemu-system-x86_64'),
               '-accel', 'tcg', '-cpu', 'max', '-smp', '1', '-display', 'none',
               '-m', str(mem), '-name', 'nova-' + instance.uuid,
               '-serial', 'file:' + os.path.join(d, 'console.log'),
               '-daemonize', '-pidfile', self._pidfile(instance)]
        if instance.kernel_id:
            kernel = self._base(context, instance.kernel_id)
            cmd += ['-kernel', kernel]
            if instance.ramdisk_id:
                cmd += ['-initrd', self._base(context, instance.ramdisk_id)]
            cmdline = image_meta.properties.get('os_command_line',
                                                'root=/dev/vda rw console=ttyS0')
            cmd += ['-append', cmdline]
        # Disks in this order (PCI slots follow the command line): system vda, then
        # the volumes, the config drive last.
        cmd += ['-drive', 'file=%s,if=none,id=system,format=qcow2' % disk,
                '-device', 'virtio-blk-pci,drive=system']
        bdms = (block_device_info or {}).get('block_device_mapping') or []
        for i, bdm in enumerate(bdms):
            ci = bdm['connection_info']
            data = ci.get('data') or {}
            serial = (ci.get('serial') or data.get('volume_id') or '')[:20]
            if ci.get('driver_volume_type') != 'rbd':
                raise exception.VolumeDriverNotFound(
                    driver_type=ci.get('driver_volume_type'))
            target = 'rbd:%s:conf=%s' % (data['name'], self.cfg['ceph_conf'])
            if self.cfg.get('ceph_user'):
                target += ':id=%s' % self.cfg['ceph_user']
            cmd += ['-drive', 'file=%s,if=none,id=vol%d,format=raw,cache=writeback'
                    % (target, i),
                    '-device', 'virtio-blk-pci,drive=vol%d,serial=%s' % (i, serial)]
        cmd += ['-drive', 'file=%s,if=none,id=config,format=raw,readonly=on' % config,
                '-device', 'virtio-blk-pci,drive=config']
        taps = []
        for i, vif in enumerate(network_info or []):
            tap = ('tap' + vif['id'])[:14]
            _run('ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap')
            taps.append(tap)
            cmd += ['-netdev', 'tap,id=n%d,ifname=%s,script=no,downscript=no' % (i, tap),
                    '-device', 'virtio-net-pci,netdev=n%d,mac=%s' % (i, vif['address'])]
        return cmd, taps

    def _plug(self, tap):
        """Move the tap (qemu holds it open) into the namespace, onto its bridge."""
        ns = self.cfg['netns']
        _run('ip', 'link', 'set', tap, 'netns', ns)
        _run('ip', '-n', ns, 'link', 'set', tap, 'master', self.cfg['bridge'], 'up')

    # ------------------------------------------------------------------ teardown
    def _teardown(self, instance, network_info):
        pid = self._pid(instance)
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if self._pid(instance) is None:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        ns = self.cfg['netns']
        for vif in network_info or []:
            tap = ('tap' + vif['id'])[:14]
            # in the namespace once plugged, in the root one if spawn failed before
            for where in (['-n', ns], []):
                try:
                    _run('ip', *where, 'link', 'del', tap)
                except processutils.ProcessExecutionError:
                    pass
        shutil.rmtree(self._dir(instance), ignore_errors=True)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        self._teardown(instance, network_info)
        super().destroy(context, instance, network_info, block_device_info,
                        destroy_disks, destroy_secrets)

    def get_info(self, instance, use_cache=True):
        info = super().get_info(instance, use_cache)
        # A guest whose qemu died is shut off, as libvirt would report it.
        if info.state == power_state.RUNNING and self._pid(instance) is None:
            self.instances[instance.uuid].state = power_state.SHUTDOWN
            return super().get_info(instance, use_cache)
        return info
