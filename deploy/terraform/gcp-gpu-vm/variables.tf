variable "project_id" {
  type        = string
  description = "GCP project to deploy into."
}

variable "region" {
  type        = string
  default     = "europe-west4"
  description = "A region with the GPU type below."
}

variable "zone" {
  type        = string
  default     = "europe-west4-a"
  description = "Zone of the VM (GPU stock differs by zone)."
}

variable "environment" {
  type        = string
  description = "dev or prod: part of every resource name."
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "machine_type" {
  type        = string
  default     = "g2-standard-8"
  description = "g2-* machines come with NVIDIA L4 GPUs (24 GB each)."
}

variable "gpu_type" {
  type        = string
  default     = "nvidia-l4"
  description = "Accelerator type matching the machine type."
}

variable "gpu_count" {
  type        = number
  default     = 1
  description = "GPUs on the VM (vLLM's --tensor-parallel-size)."
}

variable "boot_image" {
  type        = string
  default     = "projects/deeplearning-platform-release/global/images/family/common-cu124-debian-11-py310"
  description = "A Deep Learning VM image: NVIDIA driver, Docker and the NVIDIA container toolkit."
}

variable "chatworks_image" {
  type        = string
  description = "The chatworks image (Artifact Registry), run in front of the model server."
}

variable "vllm_image" {
  type        = string
  default     = "vllm/vllm-openai:v0.8.5"
  description = "The GPU model server chatworks forwards to (--provider openai)."
}

variable "model_uri" {
  type        = string
  description = "gs:// folder of a Hugging Face model directory (e.g. one `chatworks export --format hf` wrote), copied to the VM at boot: nothing is fetched from a model hub."
}

variable "model_name" {
  type        = string
  description = "The id clients ask for (CHATWORKS_MODEL)."
}

variable "admin_key_secret" {
  type        = string
  description = "Secret Manager secret id holding CHATWORKS_ADMIN_KEY."
}

variable "allowed_cidrs" {
  type        = list(string)
  default     = []
  description = "Networks (e.g. a load balancer's or a VPN's) allowed to reach chatworks on port 8000. IAP's range is always allowed for tunnels."
}
