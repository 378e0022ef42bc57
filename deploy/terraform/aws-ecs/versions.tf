terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
  # State in S3 with a lock (docs/operations/deploy.md):
  #   terraform init -backend-config="bucket=BUCKET" -backend-config="key=chatworks/dev.tfstate" \
  #     -backend-config="region=eu-west-1" -backend-config="use_lockfile=true"
  backend "s3" {}
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      app         = "chatworks"
      environment = var.environment
    }
  }
}
