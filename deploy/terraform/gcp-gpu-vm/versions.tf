terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }
  # terraform init -backend-config="bucket=BUCKET" -backend-config="prefix=chatworks-gpu/dev"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
