# Pinned: infra/terraform/schema/openstack.json is generated from this release's docs,
# and tests/tests/terraform.rs checks every argument against it. Change both together.
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    openstack = {
      source  = "terraform-provider-openstack/openstack"
      version = "= 3.4.0"
    }
  }
}

# Credentials: clouds.yaml (OS_CLOUD) or OS_* variables, as for the `openstack` CLI.
provider "openstack" {
  cloud = var.cloud
}
