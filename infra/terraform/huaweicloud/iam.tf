# The agency FunctionGraph hands the functions (temporary token + AK/SK): least privilege,
# ECS / EVS / VPC / DNS in this project and OBS on the state bucket only. Nothing else —
# no IAM, no KMS administration, no other bucket. Actions: the IAM fine-grained policy
# catalogue; what each is for is in infra/README.md ("Minimal IAM policy").

resource "huaweicloud_identity_role" "project" {
  name        = "${local.prefix}-functions"
  description = "pgsurge ${var.cluster}: replicas (ECS/EVS), their ports (VPC), their DNS records"
  type        = "XA" # project-level services
  policy = jsonencode({
    Version = "1.1"
    Statement = [{
      Effect = "Allow"
      Action = [
        # Nova-compatible API: boot from a cloned volume, tags, server group, flavors.
        "ecs:servers:create", "ecs:servers:delete", "ecs:servers:get", "ecs:servers:list",
        "ecs:servers:setTags", "ecs:serverGroups:create", "ecs:serverGroups:get",
        "ecs:serverGroups:list", "ecs:flavors:get", "ecs:cloudServerFlavors:get",
        "ecs:serverVolumeAttachments:create", "ecs:serverVolumeAttachments:list",
        "ecs:serverInterfaces:use",
        # Cinder-compatible API: snapshot a replica's data volume, clone it, delete both.
        "evs:volumes:create", "evs:volumes:delete", "evs:volumes:get", "evs:volumes:list",
        "evs:volumes:use", "evs:snapshots:create", "evs:snapshots:delete",
        "evs:snapshots:get", "evs:snapshots:list",
        # Network lookup, the replica's port, and the functions' own VPC access.
        "vpc:networks:get", "vpc:subnets:get", "vpc:vpcs:get", "vpc:securityGroups:get",
        "vpc:ports:create", "vpc:ports:get", "vpc:ports:delete", "vpc:ports:update",
        # One A record per replica in the private zone.
        "dns:zone:list", "dns:zone:get", "dns:recordset:create", "dns:recordset:delete",
        "dns:recordset:get", "dns:recordset:list", "dns:recordset:update",
      ]
    }]
  })
}

resource "huaweicloud_identity_role" "state_bucket" {
  name        = "${local.prefix}-state"
  description = "pgsurge ${var.cluster}: read and write the state document in its bucket"
  type        = "AX" # OBS is a global service
  policy = jsonencode({
    Version = "1.1"
    Statement = [{
      Effect = "Allow"
      Action = ["obs:bucket:ListBucket", "obs:object:GetObject", "obs:object:PutObject", "obs:object:DeleteObject"]
      Resource = [
        "OBS:*:*:bucket:${var.state_bucket}",
        "OBS:*:*:object:${var.state_bucket}/*",
      ]
    }]
  })
}

resource "huaweicloud_identity_agency" "functions" {
  name                  = "${local.prefix}-functions"
  description           = "FunctionGraph agency of the pgsurge ${var.cluster} functions"
  delegated_domain_name = "op_svc_cff" # the FunctionGraph service
  duration              = "FOREVER"

  project_role {
    project = var.region
    roles   = [huaweicloud_identity_role.project.name]
  }
  domain_roles = [huaweicloud_identity_role.state_bucket.name]
}
