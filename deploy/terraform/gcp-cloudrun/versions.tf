terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
  # State lives in a GCS bucket, one prefix per environment (docs/operations/deploy.md):
  #   terraform init -backend-config="bucket=BUCKET" -backend-config="prefix=chatworks/dev"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
  # The billing budget API needs a quota project when called with user credentials.
  user_project_override = true
  billing_project       = var.project_id
}
