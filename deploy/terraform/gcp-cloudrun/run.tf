# The image repository, the runtime identity and the service.
resource "google_artifact_registry_repository" "chatworks" {
  # checkov:skip=CKV_GCP_84:Google-managed encryption; a customer key adds a KMS key ring to run and pay for
  repository_id = "chatworks"
  location      = var.region
  format        = "DOCKER"
  depends_on    = [google_project_service.apis]

  # Old images go, but never the last ten: they are what a rollback runs.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }
}

# Least privilege: the service may read its own three secrets and nothing else. (Cloud Run's
# service agent, not this account, pulls the image; logs go to stdout.)
resource "google_service_account" "run" {
  account_id   = "${local.name}-run"
  display_name = "chatworks ${var.environment} (Cloud Run runtime)"
}

resource "google_secret_manager_secret_iam_member" "run" {
  for_each  = google_secret_manager_secret.chatworks
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.run.email}"
}

locals {
  image = var.image != "" ? var.image : "${var.region}-docker.pkg.dev/${var.project_id}/chatworks/chatworks:latest"
  # Setting name -> secret: each becomes an environment variable read from Secret Manager.
  secret_env = {
    CHATWORKS_ADMIN_KEY    = "admin-key"
    CHATWORKS_DATABASE_URL = "database-url"
    CHATWORKS_REDIS_URL    = "redis-url"
  }
  plain_env = {
    CHATWORKS_AUTH    = "required"
    CHATWORKS_WORKERS = "1"
    # Cloud Run allows 10 s between SIGTERM and the kill: drain for 8.
    CHATWORKS_SHUTDOWN_TIMEOUT_S = "8"
    OTEL_SERVICE_NAME            = local.name
  }
}

resource "google_cloud_run_v2_service" "chatworks" {
  name                = local.name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection
  depends_on          = [google_secret_manager_secret_iam_member.run, google_secret_manager_secret_version.chatworks]

  # Terraform creates the service with var.image; releases (scripts/deploy.sh) own the image and
  # the traffic split from then on, so a later `terraform apply` does not roll them back.
  lifecycle {
    ignore_changes = [template[0].containers[0].image, traffic, client, client_version]
  }

  template {
    service_account                  = google_service_account.run.email
    max_instance_request_concurrency = var.concurrency
    timeout                          = "300s" # the longest stream

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = google_compute_network.main.id
        subnetwork = google_compute_subnetwork.run.id
      }
    }

    containers {
      image = local.image
      args  = ["serve"]
      ports {
        container_port = 8000
      }
      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = false # the engine's scheduler thread works between requests
        startup_cpu_boost = true
      }
      dynamic "env" {
        for_each = local.plain_env
        content {
          name  = env.key
          value = env.value
        }
      }
      dynamic "env" {
        for_each = local.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.chatworks[env.value].secret_id
              version = "latest"
            }
          }
        }
      }
      # Traffic arrives once the model is loaded and the database answers (/readyz); the
      # instance is restarted only if the process stops answering (/healthz).
      startup_probe {
        http_get {
          path = "/readyz"
          port = 8000
        }
        period_seconds    = 5
        timeout_seconds   = 3
        failure_threshold = 60
      }
      liveness_probe {
        http_get {
          path = "/healthz"
          port = 8000
        }
        period_seconds    = 15
        timeout_seconds   = 3
        failure_threshold = 3
      }
    }
  }
}

# chatworks checks API keys itself (CHATWORKS_AUTH=required), as an OpenAI-compatible API must
# for clients that cannot send Google identity tokens.
resource "google_cloud_run_v2_service_iam_member" "public" {
  # checkov:skip=CKV_GCP_102:chatworks enforces its own API keys (CHATWORKS_AUTH=required)
  name     = google_cloud_run_v2_service.chatworks.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}
