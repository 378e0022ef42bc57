variable "project_id" {
  type        = string
  description = "GCP project to deploy into."
}

variable "region" {
  type        = string
  default     = "europe-west1"
  description = "Region of Cloud Run, Cloud SQL, Memorystore and Artifact Registry."
}

variable "environment" {
  type        = string
  description = "dev or prod: part of every resource name."
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "image" {
  type        = string
  default     = ""
  description = "Image to run (REGION-docker.pkg.dev/PROJECT/chatworks/chatworks:TAG or @sha256:...). Empty: the repository's :latest, which cloudbuild.yaml pushes."
}

variable "min_instances" {
  type        = number
  default     = 0
  description = "Instances kept warm. 0 scales to zero (the first request then waits for a model load)."
}

variable "max_instances" {
  type        = number
  default     = 4
  description = "Upper bound of instances, and so of cost."
}

variable "cpu" {
  type        = string
  default     = "2"
  description = "vCPUs per instance."
}

variable "memory" {
  type        = string
  default     = "4Gi"
  description = "Memory per instance."
}

variable "concurrency" {
  type        = number
  default     = 16
  description = "Requests one instance takes at once (the engine batches them; more wait in its queue)."
}

variable "db_tier" {
  type        = string
  default     = "db-custom-1-3840"
  description = "Cloud SQL machine tier."
}

variable "db_high_availability" {
  type        = bool
  default     = false
  description = "Regional (failover) Cloud SQL instead of zonal."
}

variable "redis_memory_gb" {
  type        = number
  default     = 1
  description = "Memorystore size."
}

variable "deletion_protection" {
  type        = bool
  default     = true
  description = "Refuse to destroy the database and the service (set false before a teardown)."
}

variable "billing_account" {
  type        = string
  description = "Billing account id (XXXXXX-XXXXXX-XXXXXX) that pays for the project: the budget is set on it."
}

variable "monthly_budget" {
  type        = number
  description = "Monthly budget in the billing account's currency; alerts at 50%, 90% and 100%."
}

variable "alert_email" {
  type        = string
  description = "Who receives the budget alerts."
}
