# Postgres (documents, vectors with pgvector, keys, audit, usage) and Redis (rate limits and
# the response cache shared by every instance). chatworks' first migration runs
# `CREATE EXTENSION vector`, which the Cloud SQL user created here may do.
resource "google_sql_database_instance" "main" {
  # checkov:skip=CKV_GCP_6:ssl_mode ENCRYPTED_ONLY below refuses plain connections (require_ssl is gone from provider 6)
  name                = local.name
  database_version    = "POSTGRES_18"
  region              = var.region
  deletion_protection = var.deletion_protection
  depends_on          = [google_service_networking_connection.services]

  settings {
    tier              = var.db_tier
    availability_type = var.db_high_availability ? "REGIONAL" : "ZONAL"
    disk_autoresize   = true

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.main.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }

    # What Cloud SQL's own security recommendations (and checkov) ask to be logged.
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
  }
}

resource "google_sql_database" "chatworks" {
  name     = "chatworks"
  instance = google_sql_database_instance.main.name
}

resource "random_password" "db" {
  length  = 32
  special = false
}

resource "google_sql_user" "chatworks" {
  name     = "chatworks"
  instance = google_sql_database_instance.main.name
  password = random_password.db.result
}

resource "google_redis_instance" "main" {
  name               = local.name
  tier               = var.environment == "prod" ? "STANDARD_HA" : "BASIC"
  memory_size_gb     = var.redis_memory_gb
  region             = var.region
  redis_version      = "REDIS_7_2"
  authorized_network = google_compute_network.main.id
  connect_mode       = "PRIVATE_SERVICE_ACCESS"
  auth_enabled       = true
  # checkov:skip=CKV_GCP_97:TLS would need the instance's CA in the image; traffic stays in the private VPC
  transit_encryption_mode = "DISABLED"
  depends_on              = [google_service_networking_connection.services]
}

# The settings chatworks reads as secrets. Their values are in Terraform state too: keep the
# state bucket private (docs/operations/deploy.md).
resource "random_password" "admin_key" {
  length  = 40
  special = false
}

locals {
  secrets = {
    admin-key    = "cw-${random_password.admin_key.result}"
    database-url = "postgresql+psycopg://chatworks:${random_password.db.result}@${google_sql_database_instance.main.private_ip_address}:5432/chatworks?sslmode=require"
    redis-url    = "redis://:${google_redis_instance.main.auth_string}@${google_redis_instance.main.host}:${google_redis_instance.main.port}/0"
  }
}

resource "google_secret_manager_secret" "chatworks" {
  for_each  = local.secrets
  secret_id = "${local.name}-${each.key}"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "chatworks" {
  for_each    = local.secrets
  secret      = google_secret_manager_secret.chatworks[each.key].id
  secret_data = each.value
}
