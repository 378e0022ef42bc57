# terraform apply -var-file=prod.tfvars -var project_id=... -var billing_account=... -var alert_email=...
environment          = "prod"
min_instances        = 1
max_instances        = 10
cpu                  = "4"
memory               = "8Gi"
db_tier              = "db-custom-2-7680"
db_high_availability = true
redis_memory_gb      = 2
deletion_protection  = true
monthly_budget       = 500
