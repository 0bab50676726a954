# Cloud Eye → SMN → the functions. One topic per direction, each with a FunctionGraph SMN
# trigger on its function. The alarm parameters pgsurge reads (README "Alarm parameters")
# travel in the alarm description: `pgsurge.cluster=<name>` (required by cluster scoping)
# and the sizing parameter.
resource "huaweicloud_smn_topic" "alarms" {
  for_each     = toset(["scale-up", "scale-down"])
  name         = "${local.prefix}-${each.key}"
  display_name = "pgsurge ${var.cluster} ${each.key}"
}

resource "huaweicloud_fgs_function_trigger" "alarm" {
  for_each     = huaweicloud_smn_topic.alarms
  function_urn = huaweicloud_fgs_function.fn[each.key].urn
  type         = "SMN"
  status       = "ACTIVE"
  event_data = jsonencode({
    topic_urn = each.value.topic_urn
  })
}

locals {
  # ECS CPU of the base replicas: HAProxy balances the read tier evenly, so theirs is the
  # tier's load; surge replicas come and go and need no rule change.
  base_dimensions = [for s in huaweicloud_compute_instance.base : s.id]
}

resource "huaweicloud_ces_alarmrule" "scale_up" {
  alarm_name        = "${local.prefix}-read-hot"
  alarm_description = "Read tier hot. pgsurge.cluster=${var.cluster} pgsurge.multiplier=${var.scale_up_multiplier}"
  alarm_type        = "MULTI_INSTANCE"
  alarm_enabled     = true

  metric {
    namespace = "SYS.ECS"
  }

  dynamic "resources" {
    for_each = local.base_dimensions
    content {
      dimensions {
        name  = "instance_id"
        value = resources.value
      }
    }
  }

  # Three 5-minute periods above the threshold: a short spike does not scale.
  condition {
    metric_name         = "cpu_util"
    period              = 300
    filter              = "average"
    comparison_operator = ">"
    value               = var.scale_up_cpu_percent
    unit                = "%"
    count               = 3
    suppress_duration   = 900
    alarm_level         = 2
  }

  alarm_action_enabled = true
  alarm_actions {
    type              = "notification"
    notification_list = [huaweicloud_smn_topic.alarms["scale-up"].topic_urn]
  }
}

resource "huaweicloud_ces_alarmrule" "scale_down" {
  alarm_name        = "${local.prefix}-read-cold"
  alarm_description = "Read tier idle. pgsurge.cluster=${var.cluster} pgsurge.replicas=${var.scale_down_replicas}"
  alarm_type        = "MULTI_INSTANCE"
  alarm_enabled     = true

  metric {
    namespace = "SYS.ECS"
  }

  dynamic "resources" {
    for_each = local.base_dimensions
    content {
      dimensions {
        name  = "instance_id"
        value = resources.value
      }
    }
  }

  # Idle for 4 hours (one-hour periods) before a replica goes: scaling down is cheap to
  # delay and expensive to get wrong.
  condition {
    metric_name         = "cpu_util"
    period              = 3600
    filter              = "average"
    comparison_operator = "<"
    value               = var.scale_down_cpu_percent
    unit                = "%"
    count               = 4
    suppress_duration   = 3600
    alarm_level         = 4
  }

  alarm_action_enabled = true
  alarm_actions {
    type              = "notification"
    notification_list = [huaweicloud_smn_topic.alarms["scale-down"].topic_urn]
  }
}
