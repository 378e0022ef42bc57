environment = "dev"
gpu_count   = 1
