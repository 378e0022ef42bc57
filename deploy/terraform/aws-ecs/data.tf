# Postgres 17 on RDS (pgvector is one of its extensions: chatworks' first migration creates it)
# and Redis with TLS and a token. The secrets chatworks reads are in Secrets Manager, encrypted
# with this stack's key.
resource "aws_kms_key" "chatworks" {
  description             = "${local.name}: database, Redis, secrets, logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "Account"
        Effect    = "Allow"
        Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.this.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "Logs"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
      },
    ]
  })
}

data "aws_caller_identity" "this" {}

resource "aws_db_subnet_group" "main" {
  name       = local.name
  subnet_ids = var.private_subnet_ids
}

resource "aws_db_parameter_group" "main" {
  name   = local.name
  family = "postgres17"
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

resource "random_password" "db" {
  length  = 32
  special = false
}

resource "aws_db_instance" "main" {
  # checkov:skip=CKV_AWS_161:chatworks connects with a password from Secrets Manager, not IAM tokens
  # checkov:skip=CKV2_AWS_30:query logging is set by log_min_duration_statement in the parameter group
  identifier                            = local.name
  engine                                = "postgres"
  engine_version                        = "17"
  instance_class                        = var.db_instance_class
  allocated_storage                     = 20
  max_allocated_storage                 = 200
  storage_encrypted                     = true
  kms_key_id                            = aws_kms_key.chatworks.arn
  db_name                               = "chatworks"
  username                              = "chatworks"
  password                              = random_password.db.result
  db_subnet_group_name                  = aws_db_subnet_group.main.name
  parameter_group_name                  = aws_db_parameter_group.main.name
  vpc_security_group_ids                = [aws_security_group.db.id]
  multi_az                              = var.high_availability
  backup_retention_period               = 7
  deletion_protection                   = var.deletion_protection
  skip_final_snapshot                   = !var.deletion_protection
  final_snapshot_identifier             = "${local.name}-final"
  copy_tags_to_snapshot                 = true
  auto_minor_version_upgrade            = true
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.chatworks.arn
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn
  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  iam_database_authentication_enabled   = false
  performance_insights_retention_period = 7
}

resource "aws_iam_role" "rds_monitoring" {
  name = "${local.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "monitoring.rds.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_elasticache_subnet_group" "main" {
  name       = local.name
  subnet_ids = var.private_subnet_ids
}

resource "random_password" "redis" {
  length  = 40
  special = false
}

resource "aws_elasticache_replication_group" "main" {
  replication_group_id       = local.name
  description                = "chatworks rate limits and response cache"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_cache_clusters         = var.high_availability ? 2 : 1
  automatic_failover_enabled = var.high_availability
  multi_az_enabled           = var.high_availability
  subnet_group_name          = aws_elasticache_subnet_group.main.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.chatworks.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis.result
  snapshot_retention_limit   = 0 # counters and a cache: nothing to restore
}

resource "random_password" "admin_key" {
  length  = 40
  special = false
}

locals {
  # Values also sit in Terraform state: keep the state bucket private and encrypted.
  secrets = {
    admin-key    = "cw-${random_password.admin_key.result}"
    database-url = "postgresql+psycopg://chatworks:${random_password.db.result}@${aws_db_instance.main.address}:5432/chatworks?sslmode=require"
    # rediss: TLS, verified against the system CAs (ElastiCache's certificates are public).
    redis-url = "rediss://:${random_password.redis.result}@${aws_elasticache_replication_group.main.primary_endpoint_address}:6379/0"
  }
}

resource "aws_secretsmanager_secret" "chatworks" {
  # checkov:skip=CKV2_AWS_57:rotation would need a Lambda that also updates the database user; rotate by re-applying
  for_each                = local.secrets
  name                    = "${local.name}/${each.key}"
  kms_key_id              = aws_kms_key.chatworks.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "chatworks" {
  for_each      = local.secrets
  secret_id     = aws_secretsmanager_secret.chatworks[each.key].id
  secret_string = each.value
}
