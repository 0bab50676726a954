# Aodh alarms. The OpenStack provider has no Aodh resource, so they are a Heat stack
# (OS::Aodh::GnocchiAggregationByResourcesAlarm). Aodh posts to the functions' HTTP
# host (alarm_actions); it cannot send headers, so the token rides in the URL
# (auth.token_query_param, `token`). Aodh's body has no description: pgsurge reads the
# alarm parameters from the alarm *name*, which Heat makes from the resource name
# (`<stack>-<resource>-<id>`) — hence resource names holding the parameters as words.
locals {
  # Mean CPU over the cluster's replicas (base and surge: all named pgsurge-<cluster>-*),
  # from Gnocchi's cumulative `cpu` (ns): a rate over 300 s of p% is p/100*300e9.
  alarm_query = jsonencode({ and = [
    { like = { display_name = "${local.prefix}-%" } },
    { "=" = { ended_at = null } },
  ] })

  up_name   = " pgsurge.cluster=${var.cluster} pgsurge.multiplier=${var.scale_up_multiplier} "
  down_name = " pgsurge.cluster=${var.cluster} pgsurge.action=scale-down "

  alarm_template = {
    heat_template_version = "2018-08-31"
    description           = "pgsurge ${var.cluster} read-tier alarms"
    resources = {
      (local.up_name) = {
        type = "OS::Aodh::GnocchiAggregationByResourcesAlarm"
        properties = {
          description         = "Read tier hot"
          metric              = "cpu"
          aggregation_method  = "rate:mean"
          granularity         = 300
          evaluation_periods  = 3
          threshold           = var.scale_up_cpu_percent * 3000000000
          comparison_operator = "gt"
          resource_type       = "instance"
          query               = local.alarm_query
          alarm_actions       = ["${var.functions_url}/scale-up?token=${var.webhook_token}"]
          repeat_actions      = false
        }
      }
      (local.down_name) = {
        type = "OS::Aodh::GnocchiAggregationByResourcesAlarm"
        properties = {
          description         = "Read tier idle"
          metric              = "cpu"
          aggregation_method  = "rate:mean"
          granularity         = 3600
          evaluation_periods  = 4
          threshold           = var.scale_down_cpu_percent * 36000000000
          comparison_operator = "lt"
          resource_type       = "instance"
          query               = local.alarm_query
          alarm_actions       = ["${var.functions_url}/scale-down?token=${var.webhook_token}"]
          repeat_actions      = false
        }
      }
    }
  }
}

resource "openstack_orchestration_stack_v1" "alarms" {
  name = "${local.prefix}-alarms"
  template_opts = {
    Bin = yamlencode(local.alarm_template)
  }
  disable_rollback = false
  timeout          = 10
}
