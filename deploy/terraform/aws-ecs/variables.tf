variable "region" {
  type        = string
  default     = "eu-west-1"
  description = "AWS region."
}

variable "environment" {
  type        = string
  description = "dev or prod: part of every resource name."
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "vpc_id" {
  type        = string
  description = "The VPC to deploy into."
}

variable "public_subnet_ids" {
  type        = list(string)
  description = "Subnets (two zones or more) for the load balancer."
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Subnets with a NAT route for the tasks, the database and Redis."
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate for the load balancer's HTTPS listener."
}

variable "image_tag" {
  type        = string
  default     = "latest"
  description = "Tag of the image in the ECR repository this creates."
}

variable "desired_count" {
  type        = number
  default     = 2
  description = "Tasks running normally; autoscaling moves between this and max_count."
}

variable "max_count" {
  type        = number
  default     = 6
  description = "Upper bound of tasks, and so of cost."
}

variable "task_cpu" {
  type        = number
  default     = 2048
  description = "Fargate CPU units per task (1024 = one vCPU)."
}

variable "task_memory" {
  type        = number
  default     = 4096
  description = "Fargate memory per task, MiB."
}

variable "db_instance_class" {
  type        = string
  default     = "db.t4g.medium"
  description = "RDS instance class."
}

variable "high_availability" {
  type        = bool
  default     = true
  description = "A standby database and a Redis replica in a second zone, with automatic failover."
}

variable "redis_node_type" {
  type        = string
  default     = "cache.t4g.small"
  description = "ElastiCache node type."
}

variable "deletion_protection" {
  type        = bool
  default     = true
  description = "Protect the database and the load balancer from deletion (false before a teardown)."
}
