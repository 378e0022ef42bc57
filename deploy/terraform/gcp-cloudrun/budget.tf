# An e-mail at 50%, 90% and 100% of the monthly budget (actual spend) and at 100% forecast.
# A budget alerts; it does not stop spending (docs/operations/deploy.md, "Cost").
data "google_project" "this" {}

resource "google_monitoring_notification_channel" "budget" {
  display_name = "${local.name} budget"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }
  depends_on = [google_project_service.apis]
}

resource "google_billing_budget" "chatworks" {
  billing_account = var.billing_account
  display_name    = "${local.name} monthly"

  budget_filter {
    projects = ["projects/${data.google_project.this.number}"]
  }

  amount {
    specified_amount {
      units = tostring(var.monthly_budget)
    }
  }

  threshold_rules {
    threshold_percent = 0.5
  }
  threshold_rules {
    threshold_percent = 0.9
  }
  threshold_rules {
    threshold_percent = 1.0
  }
  threshold_rules {
    threshold_percent = 1.0
    spend_basis       = "FORECASTED_SPEND"
  }

  all_updates_rule {
    monitoring_notification_channels = [google_monitoring_notification_channel.budget.id]
    disable_default_iam_recipients   = false
  }
}
