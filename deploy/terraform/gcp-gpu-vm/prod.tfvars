environment  = "prod"
machine_type = "g2-standard-24"
gpu_count    = 2
