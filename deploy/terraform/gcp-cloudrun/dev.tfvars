# terraform apply -var-file=dev.tfvars -var project_id=... -var billing_account=... -var alert_email=...
environment          = "dev"
min_instances        = 0
max_instances        = 2
db_tier              = "db-f1-micro"
db_high_availability = false
redis_memory_gb      = 1
deletion_protection  = false
monthly_budget       = 50
