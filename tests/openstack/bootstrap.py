#!/usr/bin/python3
"""Idempotent bootstrap of pgsurge's OpenStack test cloud, after every API answers.

Creates (or finds) the service project and service users, the catalog, the projects and
users the tests run as, flavors, quotas, two networks with subnets (one only in the API,
one for the qemu guests), the `qemu` zone, the volume types, a security group, a key
pair and an application credential; waits for both nova-computes and both cinder-volume
backends to report up; and writes <dir>/clouds.yaml. Talks to the APIs with keystoneauth's Session and plain
JSON, so one python process does everything (a CLI call per step costs seconds each).

Test identities (all in domain Default, region RegionOne):
  pgsurge        project pgsurge, role member: what the adapter runs as (password auth)
  pgsurge-appcred   the same user through an application credential
  pgsurge-quota  project pgsurge-quota, role member, quotas volumes=2 / instances=1
  pgsurge-admin  admin on project admin: only test set-up (reset-status, quotas)
"""
import argparse
import sys
import time

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

KS = "http://127.0.0.1:5000/v3"
REGION = "RegionOne"
QEMU_HOST = "os-qemu1"  # the compute with real qemu guests (up.sh, zone `qemu`)
USERS = {  # name -> (password, project)
    "pgsurge": ("pgsurge-pass", "pgsurge"),
    "pgsurge-quota": ("pgsurge-quota-pass", "pgsurge-quota"),
}
APPCRED = ("pgsurge-ci", "pgsurge-appcred-secret")
# An ed25519 public key (its private half was never kept): Nova only needs a valid key.
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIAAQh1qftEhcZdCbmTkl6C2btniXIgU4+ntJhZYc4u4 pgsurge-test"
CATALOG = [  # name, type, url
    ("placement", "placement", "http://127.0.0.1:8778"),
    ("nova", "compute", "http://127.0.0.1:8774/v2.1"),
    ("cinderv3", "volumev3", "http://127.0.0.1:8776/v3/%(project_id)s"),
    ("cinder", "block-storage", "http://127.0.0.1:8776/v3/%(project_id)s"),
    ("glance", "image", "http://127.0.0.1:9292"),
    ("neutron", "network", "http://127.0.0.1:9696"),
    ("designate", "dns", "http://127.0.0.1:9001"),
    ("aodh", "alarming", "http://127.0.0.1:8042"),
]


def log(msg):
    print(f"[bootstrap] {msg}", file=sys.stderr, flush=True)


def session(user, password, project):
    auth = v3.Password(auth_url=KS, username=user, password=password, project_name=project,
                       user_domain_id="default", project_domain_id="default")
    return ks_session.Session(auth=auth)


class Api:
    """JSON calls against one service of the catalog, as one identity."""

    def __init__(self, sess, service_type, headers=None):
        self.s, self.t, self.h = sess, service_type, headers or {}

    def call(self, method, path, body=None, ok=(200, 201, 202, 204)):
        r = self.s.request(path, method, json=body, raise_exc=False, headers=self.h,
                           endpoint_filter={"service_type": self.t, "interface": "public",
                                            "region_name": REGION})
        if r.status_code not in ok:
            raise SystemExit(f"{method} {self.t}{path} -> {r.status_code} {r.text[:400]}")
        return r.json() if r.content else {}

    def get(self, path, ok=(200,)):
        return self.call("GET", path, ok=ok)


def one(items, **match):
    found = [i for i in items if all(i.get(k) == v for k, v in match.items())]
    return found[0] if found else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--admin-password", required=True)
    ap.add_argument("--service-password", required=True)
    ap.add_argument("--vm-cidr", default="198.18.10.0/24")
    ap.add_argument("--vm-gateway", default="198.18.10.1")
    ap.add_argument("--vm-pool-start", default="198.18.10.10")
    ap.add_argument("--vm-pool-end", default="198.18.10.99")
    ap.add_argument("phase", choices=("identity", "resources"))
    a = ap.parse_args()
    if a.phase == "identity":
        identity(a)
    else:
        resources(a)


def identity(a):
    """Right after Keystone answers, before any other service starts: the services
    authenticate as these users when they start (nova-conductor exits without them)."""

    admin = session("admin", a.admin_password, "admin")
    ks = Api(admin, "identity")

    roles = {r["name"]: r["id"] for r in ks.get("/roles")["roles"]}
    for name in ("member", "service"):
        if name not in roles:
            roles[name] = ks.call("POST", "/roles", {"role": {"name": name}})["role"]["id"]

    projects = {p["name"]: p["id"] for p in ks.get("/projects")["projects"]}
    for name in ("service", "pgsurge", "pgsurge-quota"):
        if name not in projects:
            projects[name] = ks.call("POST", "/projects", {"project": {
                "name": name, "domain_id": "default", "description": name}})["project"]["id"]

    users = {u["name"]: u["id"] for u in ks.get("/users")["users"]}

    def user(name, password, project, role_names):
        if name not in users:
            users[name] = ks.call("POST", "/users", {"user": {
                "name": name, "password": password, "domain_id": "default",
                "default_project_id": projects[project]}})["user"]["id"]
        for r in role_names:
            ks.call("PUT", f"/projects/{projects[project]}/users/{users[name]}/roles/{roles[r]}",
                    ok=(200, 204))

    # Service users need 'service' too: Cinder only accepts Nova's attachment deletes with a
    # service token from a user holding it (CVE-2023-2088 fix).
    for svc in ("nova", "placement", "cinder", "glance", "neutron", "designate", "aodh", "ceilometer"):
        user(svc, a.service_password, "service", ("admin", "service"))
    for name, (password, project) in USERS.items():
        user(name, password, project, ("member",))

    services = ks.get("/services")["services"]
    for name, stype, url in CATALOG:
        s = one(services, type=stype)
        if not s:
            s = ks.call("POST", "/services", {"service": {"name": name, "type": stype}})["service"]
        have = {e["interface"] for e in ks.get(f"/endpoints?service_id={s['id']}")["endpoints"]}
        for iface in ("public", "internal", "admin"):
            if iface not in have:
                ks.call("POST", "/endpoints", {"endpoint": {
                    "service_id": s["id"], "url": url, "interface": iface, "region_id": REGION}})
    log("identity: projects, users, roles, catalog ready")


def resources(a):
    """Once every API answers: what the tests use, then clouds.yaml."""
    admin = session("admin", a.admin_password, "admin")
    ks = Api(admin, "identity")
    projects = {p["name"]: p["id"] for p in ks.get("/projects")["projects"]}
    users = {u["name"]: u["id"] for u in ks.get("/users")["users"]}

    nova = Api(admin, "compute", {"OpenStack-API-Version": "compute 2.79"})
    cinder = Api(admin, "block-storage")
    neutron = Api(admin, "network")

    # neutron warm-up: one query configures the SQLAlchemy mappers before nova lists ports
    neutron.get("/v2.0/networks")

    deadline = time.time() + 180
    while True:
        comp = [s for s in nova.get("/os-services")["services"] if s["binary"] == "nova-compute"]
        vol = [s for s in cinder.get("/os-services")["services"] if s["binary"] == "cinder-volume"]
        up = {s["host"] for s in comp if s["state"] == "up"}
        vol_up = {s["host"] for s in vol if s["state"] == "up"}
        # both computes (fake, qemu) and both volume backends (fake, rbd)
        if {"os-compute1", QEMU_HOST} <= up and {"os-volume1@fake", "os-volume1@rbd"} <= vol_up:
            break
        if time.time() > deadline:
            raise SystemExit(f"nova-compute / cinder-volume not up: {comp} {vol}")
        time.sleep(1)
    log("nova-compute (fake, qemu) and cinder-volume (fake, rbd) are up")

    # The qemu compute is availability zone `qemu`; servers that name no zone stay on the
    # fake one (nova.conf default_schedule_zone).
    aggs = nova.get("/os-aggregates")["aggregates"]
    agg = one(aggs, name="qemu") or nova.call("POST", "/os-aggregates", {"aggregate": {
        "name": "qemu", "availability_zone": "qemu"}})["aggregate"]
    if QEMU_HOST not in agg.get("hosts", []):
        nova.call("POST", f"/os-aggregates/{agg['id']}/action", {"add_host": {"host": QEMU_HOST}})
    # Volume types: the default one on the fake backend (the adapter tests' volumes hold
    # no bytes), `rbd` on the real RBD backend.
    types = cinder.get("/types")["volume_types"]
    for name, backend in (("__DEFAULT__", "fake"), ("rbd", "rbd")):
        t = one(types, name=name) or cinder.call("POST", "/types", {"volume_type": {
            "name": name, "os-volume-type-access:is_public": True}})["volume_type"]
        # Cinder refuses to change a type in use: set it only when it is not set yet
        specs = cinder.get(f"/types/{t['id']}/extra_specs")["extra_specs"]
        if specs.get("volume_backend_name") != backend:
            cinder.call("POST", f"/types/{t['id']}/extra_specs", {"extra_specs": {
                "volume_backend_name": backend}})

    flavors = nova.get("/flavors")["flavors"]
    # pgsurge.vm: what the replica image needs under TCG (qemu guests on the qemu compute)
    for fid, name, ram, disk in (("1", "m1.tiny", 512, 1), ("2", "m1.small", 2048, 20),
                                 ("3", "pgsurge.vm", 768, 3)):
        if not one(flavors, name=name):
            nova.call("POST", "/flavors", {"flavor": {"id": fid, "name": name, "vcpus": 1,
                                                      "ram": ram, "disk": disk}})

    # quotas: generous for the main project (tests run in parallel), tight for the quota tests
    nova.call("PUT", f"/os-quota-sets/{projects['pgsurge']}", {"quota_set": {
        "instances": 30, "cores": 60, "ram": 60000}})
    cinder.call("PUT", f"/os-quota-sets/{projects['pgsurge']}", {"quota_set": {
        "volumes": 60, "snapshots": 30, "gigabytes": 1000}})
    nova.call("PUT", f"/os-quota-sets/{projects['pgsurge-quota']}", {"quota_set": {"instances": 1}})
    cinder.call("PUT", f"/os-quota-sets/{projects['pgsurge-quota']}", {"quota_set": {"volumes": 2}})

    # a flat network + subnet owned by the pgsurge project; ports on it are bound by the
    # `test` mechanism driver (nova's host is named for it), so servers get a fixed IP
    nets = neutron.get("/v2.0/networks?name=pgsurge-net")["networks"]
    net = nets[0] if nets else neutron.call("POST", "/v2.0/networks", {"network": {
        "name": "pgsurge-net", "project_id": projects["pgsurge"],
        "provider:network_type": "flat", "provider:physical_network": "physnet1"}})["network"]
    if not neutron.get(f"/v2.0/subnets?network_id={net['id']}")["subnets"]:
        neutron.call("POST", "/v2.0/subnets", {"subnet": {
            "name": "pgsurge-subnet", "network_id": net["id"], "project_id": projects["pgsurge"],
            "ip_version": 4, "cidr": "10.99.0.0/24", "gateway_ip": None, "enable_dhcp": False}})

    # the qemu guests' network: a flat network whose L2 is the bridge in the namespace
    # up.sh made; no DHCP there, so Nova's config drive carries each port's address
    # (network_data.json) and the image configures it
    nets = neutron.get("/v2.0/networks?name=pgsurge-vms")["networks"]
    vnet = nets[0] if nets else neutron.call("POST", "/v2.0/networks", {"network": {
        "name": "pgsurge-vms", "project_id": projects["pgsurge"],
        "provider:network_type": "flat", "provider:physical_network": "vms"}})["network"]
    if not neutron.get(f"/v2.0/subnets?network_id={vnet['id']}")["subnets"]:
        neutron.call("POST", "/v2.0/subnets", {"subnet": {
            "name": "pgsurge-vms-subnet", "network_id": vnet["id"], "project_id": projects["pgsurge"],
            "ip_version": 4, "cidr": a.vm_cidr, "gateway_ip": a.vm_gateway, "enable_dhcp": False,
            # .2-.9 stay free for the hosts the tests run inside the namespace
            "allocation_pools": [{"start": a.vm_pool_start, "end": a.vm_pool_end}]}})

    # as the test user: security group, key pair, application credential
    pg = session("pgsurge", *USERS["pgsurge"])
    pg_neutron = Api(pg, "network")
    sgs = pg_neutron.get("/v2.0/security-groups?name=pgsurge-pg")["security_groups"]
    if not sgs:
        sg = pg_neutron.call("POST", "/v2.0/security-groups", {"security_group": {
            "name": "pgsurge-pg", "description": "PostgreSQL from the read tier"}})["security_group"]
        pg_neutron.call("POST", "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": sg["id"], "direction": "ingress", "ethertype": "IPv4",
            "protocol": "tcp", "port_range_min": 5432, "port_range_max": 5432}})
    pg_nova = Api(pg, "compute", {"OpenStack-API-Version": "compute 2.79"})
    if not one([k["keypair"] for k in pg_nova.get("/os-keypairs")["keypairs"]], name="pgsurge-key"):
        pg_nova.call("POST", "/os-keypairs", {"keypair": {"name": "pgsurge-key", "public_key": PUBKEY}})
    pg_ks = Api(pg, "identity")
    uid = users["pgsurge"]
    creds = pg_ks.get(f"/users/{uid}/application_credentials")["application_credentials"]
    cred = one(creds, name=APPCRED[0])
    if not cred:
        cred = pg_ks.call("POST", f"/users/{uid}/application_credentials", {"application_credential": {
            "name": APPCRED[0], "secret": APPCRED[1], "description": "pgsurge tests"}})["application_credential"]
    # the DNS zone the replicas' A records go in (Designate: PENDING forever, no DNS server)
    pg_dns = Api(pg, "dns")
    if not pg_dns.get("/v2/zones?name=db.pgsurge.test.")["zones"]:
        pg_dns.call("POST", "/v2/zones", {"name": "db.pgsurge.test.", "email": "dba@pgsurge.test", "ttl": 60})
    log("network, security group, key pair, application credential, DNS zone ready")

    def password_cloud(name, user, password, project):
        return f"""  {name}:
    region_name: {REGION}
    interface: public
    identity_api_version: 3
    auth_type: password
    auth:
      auth_url: {KS}
      username: {user}
      password: {password}
      project_name: {project}
      user_domain_name: Default
      project_domain_name: Default
"""

    with open(f"{a.dir}/clouds.yaml", "w") as f:
        f.write("# written by tests/openstack/bootstrap.py: the identities of the test cloud\nclouds:\n")
        f.write(password_cloud("pgsurge", "pgsurge", *USERS["pgsurge"]))
        f.write(password_cloud("pgsurge-quota", "pgsurge-quota", *USERS["pgsurge-quota"]))
        f.write(password_cloud("pgsurge-admin", "admin", a.admin_password, "admin"))
        # by id: openstack_sdk 0.22 drops application_credential_name (not in its schema)
        f.write(f"""  pgsurge-appcred:
    region_name: {REGION}
    auth_type: v3applicationcredential
    auth:
      auth_url: {KS}
      application_credential_id: {cred["id"]}
      application_credential_secret: {APPCRED[1]}
""")
    log(f"wrote {a.dir}/clouds.yaml")


if __name__ == "__main__":
    main()
