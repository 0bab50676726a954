# The five functions: FunctionGraph custom runtime (`Custom`), handler `bootstrap` (the
# executable at the zip's root; the runtime API host is picked from RUNTIME_API_ADDR),
# in the VPC so they reach HAProxy's Data Plane API and PostgreSQL.
resource "huaweicloud_fgs_function" "fn" {
  for_each = toset(local.functions)

  name          = "${local.prefix}-${each.key}"
  app           = "default"
  description   = "pgsurge ${each.key} for cluster ${var.cluster}"
  runtime       = "Custom"
  handler       = "bootstrap"
  code_type     = "zip"
  code_filename = "${each.key}.zip"
  func_code     = filebase64("${local.package_dir}/${each.key}.zip")
  memory_size   = var.function_memory_mb
  timeout       = var.function_timeouts[each.key]
  agency        = huaweicloud_identity_agency.functions.name

  vpc_id     = data.huaweicloud_vpc.this.id
  network_id = data.huaweicloud_vpc_subnet.this.id

  # Environment: plain for the settings, encrypted (KMS-backed by FunctionGraph) for
  # secrets; neither is printed by the binaries.
  user_data           = jsonencode(local.env)
  encrypted_user_data = jsonencode(local.secret_env)

  # One invocation's work is serialised by the state's lease anyway; a low cap keeps an
  # alarm storm from starting hundreds of instances that would only wait for it.
  max_instance_num = "10"
}

# Timer triggers: instance-ready polls catching-up replicas; reconcile converges.
resource "huaweicloud_fgs_function_trigger" "ready_timer" {
  function_urn = huaweicloud_fgs_function.fn["instance-ready"].urn
  type         = "TIMER"
  status       = "ACTIVE"
  event_data = jsonencode({
    name          = "${local.prefix}-ready"
    schedule_type = "Rate"
    schedule      = "${var.ready_rate_minutes}m"
    user_event    = "pgsurge tick" # the runtime delivers {"trigger_type": "TIMER", ...}: a tick
  })
}

resource "huaweicloud_fgs_function_trigger" "reconcile_timer" {
  function_urn = huaweicloud_fgs_function.fn["reconcile"].urn
  type         = "TIMER"
  status       = "ACTIVE"
  event_data = jsonencode({
    name          = "${local.prefix}-reconcile"
    schedule_type = "Rate"
    schedule      = "${var.reconcile_rate_minutes}m"
    user_event    = "pgsurge tick" # the runtime delivers {"trigger_type": "TIMER", ...}: a tick
  })
}
