output "url" {
  value       = google_cloud_run_v2_service.chatworks.uri
  description = "The service's HTTPS URL."
}

output "repository" {
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.chatworks.repository_id}"
  description = "Where cloudbuild.yaml pushes images."
}

output "service" {
  value       = google_cloud_run_v2_service.chatworks.name
  description = "Cloud Run service name (scripts/deploy.sh, scripts/rollback.sh)."
}

output "admin_key_secret" {
  value       = google_secret_manager_secret.chatworks["admin-key"].secret_id
  description = "Read the admin key with: gcloud secrets versions access latest --secret=<this>"
}
