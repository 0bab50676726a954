"""ML2 mechanism driver for pgsurge's test cloud: binds every port, on any host.

The test cloud runs neutron-server without agents, so no real mechanism driver can bind a
port and Nova refuses to boot a server with a network (PortBindingFailed). This driver
binds each port to the first segment as an OVS port with a port filter, status ACTIVE.
Nothing is plugged anywhere (nova's fake virt driver boots nothing): the point is the API
behaviour — ports, fixed IPs, security groups — that pgsurge's OpenStack adapter uses.
Loaded through the entry point in the .dist-info beside it (up.sh puts this folder on
neutron-server's sys.path).
"""
from neutron_lib.api.definitions import portbindings
from neutron_lib import constants
from neutron_lib.plugins.ml2 import api


class BindAll(api.MechanismDriver):
    def initialize(self):
        pass

    def bind_port(self, context):
        if not context.segments_to_bind:
            return
        context.set_binding(context.segments_to_bind[0][api.ID], portbindings.VIF_TYPE_OVS,
                            {portbindings.CAP_PORT_FILTER: True},
                            status=constants.PORT_STATUS_ACTIVE)

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2
