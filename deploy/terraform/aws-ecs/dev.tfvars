environment         = "dev"
desired_count       = 1
max_count           = 2
db_instance_class   = "db.t4g.small"
high_availability   = false
deletion_protection = false
