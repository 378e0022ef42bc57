# One GPU VM: vLLM serves a larger model on the GPU, chatworks (the CPU image, provider
# `openai`) serves the API, UI, documents and keys in front of it. No public address: reach it
# through an IAP tunnel, a VPN or an internal load balancer (allowed_cidrs).
locals {
  name = "chatworks-gpu-${var.environment}"
}

resource "google_project_service" "apis" {
  for_each           = toset(["compute.googleapis.com", "iap.googleapis.com", "secretmanager.googleapis.com"])
  service            = each.value
  disable_on_destroy = false
}

resource "google_compute_network" "main" {
  name                    = local.name
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

resource "google_compute_subnetwork" "main" {
  name                     = local.name
  network                  = google_compute_network.main.id
  region                   = var.region
  ip_cidr_range            = "10.9.0.0/24"
  private_ip_google_access = true
  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Outbound only (image pulls): Cloud NAT, since the VM has no external address.
resource "google_compute_router" "main" {
  name    = local.name
  network = google_compute_network.main.id
  region  = var.region
}

resource "google_compute_router_nat" "main" {
  name                               = local.name
  router                             = google_compute_router.main.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"
  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

resource "google_compute_firewall" "chatworks" {
  name      = "${local.name}-http"
  network   = google_compute_network.main.id
  direction = "INGRESS"
  allow {
    protocol = "tcp"
    ports    = ["8000"]
  }
  # 35.235.240.0/20 is where IAP TCP forwarding connects from.
  source_ranges = concat(["35.235.240.0/20"], var.allowed_cidrs)
  target_tags   = ["chatworks"]
  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_service_account" "vm" {
  account_id   = "${local.name}-vm"
  display_name = "chatworks GPU VM ${var.environment}"
}

# Least privilege: write logs and metrics, pull images, read the model and the admin key.
resource "google_project_iam_member" "vm" {
  for_each = toset(["roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/artifactregistry.reader"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.vm.email}"
}

resource "google_storage_bucket_iam_member" "model" {
  bucket = split("/", trimprefix(var.model_uri, "gs://"))[0]
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.vm.email}"
}

resource "google_secret_manager_secret_iam_member" "admin_key" {
  secret_id = var.admin_key_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.vm.email}"
}

resource "google_compute_instance" "gpu" {
  # checkov:skip=CKV_GCP_39:Secure Boot rejects the unsigned NVIDIA kernel modules the image installs
  # checkov:skip=CKV_GCP_38:a customer-supplied key must be given at every start; Google-managed encryption
  name         = local.name
  machine_type = var.machine_type
  zone         = var.zone
  tags         = ["chatworks"]

  boot_disk {
    initialize_params {
      image = var.boot_image
      size  = 200 # the image, the model and vLLM's image
      type  = "pd-balanced"
    }
  }

  guest_accelerator {
    type  = var.gpu_type
    count = var.gpu_count
  }

  # GPU VMs cannot live-migrate.
  scheduling {
    on_host_maintenance = "TERMINATE"
    automatic_restart   = true
  }

  network_interface {
    subnetwork = google_compute_subnetwork.main.id
  }

  service_account {
    email  = google_service_account.vm.email
    scopes = ["cloud-platform"] # access is what the IAM roles above grant
  }

  shielded_instance_config {
    enable_secure_boot          = false
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  metadata = {
    install-nvidia-driver  = "True"
    block-project-ssh-keys = "true"
    enable-oslogin         = "TRUE"
    serial-port-enable     = "false"
    startup-script = templatefile("${path.module}/startup.sh.tftpl", {
      chatworks_image  = var.chatworks_image
      vllm_image       = var.vllm_image
      model_uri        = var.model_uri
      model_name       = var.model_name
      gpu_count        = var.gpu_count
      admin_key_secret = var.admin_key_secret
    })
  }

  depends_on = [google_project_iam_member.vm, google_storage_bucket_iam_member.model]
}

output "instance" {
  value       = google_compute_instance.gpu.name
  description = "gcloud compute start-iap-tunnel <this> 8000 --local-host-port=localhost:8000 --zone=<zone>"
}

output "internal_ip" {
  value       = google_compute_instance.gpu.network_interface[0].network_ip
  description = "chatworks listens here on port 8000."
}
