# Pinned: infra/terraform/schema/huaweicloud.json is generated from this release's docs,
# and tests/tests/terraform.rs checks every argument against it. Change both together.
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    huaweicloud = {
      source  = "huaweicloud/huaweicloud"
      version = "= 1.97.1"
    }
  }
}

# SberCloud: see README ("SberCloud") — same resources under the sbercloud provider.
provider "huaweicloud" {
  region = var.region
}
