# The image repository, the Fargate service and its load balancer.
resource "aws_ecr_repository" "chatworks" {
  name                 = "chatworks"
  image_tag_mutability = "IMMUTABLE" # a tag names one build forever: rollbacks are exact
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.chatworks.arn
  }
}

resource "aws_ecs_cluster" "main" {
  name = local.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "chatworks" {
  name              = "/ecs/${local.name}"
  retention_in_days = 365
  kms_key_id        = aws_kms_key.chatworks.arn
}

# The execution role pulls the image, writes logs and reads the three secrets; the task itself
# needs no AWS permission at all.
data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  name = "read-chatworks-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [for s in aws_secretsmanager_secret.chatworks : s.arn]
      },
      {
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [aws_kms_key.chatworks.arn]
      },
    ]
  })
}

resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

locals {
  secret_env = {
    CHATWORKS_ADMIN_KEY    = "admin-key"
    CHATWORKS_DATABASE_URL = "database-url"
    CHATWORKS_REDIS_URL    = "redis-url"
  }
}

resource "aws_ecs_task_definition" "chatworks" {
  family                   = local.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  # Task-local scratch for the read-only container: /data and /tmp.
  volume {
    name = "data"
  }
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = "chatworks"
    image                  = "${aws_ecr_repository.chatworks.repository_url}:${var.image_tag}"
    command                = ["serve"]
    essential              = true
    readonlyRootFilesystem = true
    user                   = "10001:10001"
    portMappings           = [{ containerPort = 8000, protocol = "tcp" }]
    # ECS sends SIGTERM, waits stopTimeout, then kills: drain for less than that.
    stopTimeout = 30
    environment = [
      { name = "CHATWORKS_AUTH", value = "required" },
      { name = "CHATWORKS_SHUTDOWN_TIMEOUT_S", value = "25" },
      { name = "OTEL_SERVICE_NAME", value = local.name },
    ]
    secrets = [for env, key in local.secret_env : { name = env, valueFrom = aws_secretsmanager_secret.chatworks[key].arn }]
    mountPoints = [
      { sourceVolume = "data", containerPath = "/data" },
      { sourceVolume = "tmp", containerPath = "/tmp" },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.chatworks.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "chatworks"
      }
    }
  }])
}

resource "aws_ecs_service" "chatworks" {
  name                              = local.name
  cluster                           = aws_ecs_cluster.main.id
  task_definition                   = aws_ecs_task_definition.chatworks.arn
  desired_count                     = var.desired_count
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 120 # the model loads before /readyz says 200
  # A deployment whose tasks never become healthy goes back to the last good one by itself.
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.app.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.chatworks.arn
    container_name   = "chatworks"
    container_port   = 8000
  }

  lifecycle {
    ignore_changes = [desired_count] # autoscaling owns it
  }
  depends_on = [aws_lb_listener.https]
}

resource "aws_lb" "main" {
  # checkov:skip=CKV_AWS_91:access logs need a bucket policy per region; enable them with your log bucket
  # checkov:skip=CKV2_AWS_28:attach your WAF web ACL; chatworks enforces keys, sizes and rate limits itself
  name                       = local.name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 300 # streams pause between tokens; the longest one
}

resource "aws_lb_target_group" "chatworks" {
  # checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the tasks are reachable only from it
  name                 = local.name
  port                 = 8000
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30 # streams in flight finish (CHATWORKS_SHUTDOWN_TIMEOUT_S)
  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.chatworks.arn
  }
}

# Scale on CPU between desired_count and max_count.
resource "aws_appautoscaling_target" "chatworks" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.chatworks.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.desired_count
  max_capacity       = var.max_count
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${local.name}-cpu"
  service_namespace  = aws_appautoscaling_target.chatworks.service_namespace
  resource_id        = aws_appautoscaling_target.chatworks.resource_id
  scalable_dimension = aws_appautoscaling_target.chatworks.scalable_dimension
  policy_type        = "TargetTrackingScaling"
  target_tracking_scaling_policy_configuration {
    target_value       = 70
    scale_in_cooldown  = 300 # a new task costs a model load
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

output "url" {
  value       = "https://${aws_lb.main.dns_name}"
  description = "Point your DNS name (the certificate's) at this."
}

output "repository" {
  value       = aws_ecr_repository.chatworks.repository_url
  description = "Push images here."
}

output "admin_key_secret" {
  value       = aws_secretsmanager_secret.chatworks["admin-key"].name
  description = "aws secretsmanager get-secret-value --secret-id <this>"
}
