variable "eks_cluster_name" {
  description = "Name of the EKS cluster the operator runs in (needs the eks-pod-identity-agent add-on)."
  type        = string
}

variable "namespace" {
  description = "Namespace of the Helm release."
  type        = string
  default     = "dsql-system"
}

variable "service_account" {
  description = "The operator's ServiceAccount name (the chart's serviceAccount.name, default the release fullname)."
  type        = string
  default     = "dsql-credential-operator"
}

variable "role_name" {
  description = "Name of the IAM role (and prefix of the policy names)."
  type        = string
  default     = "dsql-credential-operator"
}

variable "secret_prefix" {
  description = "The chart's config.secretPrefix: the operator may only manage secrets named <secret_prefix>/*."
  type        = string
  default     = "dsql"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]+$", var.secret_prefix))
    error_message = "secret_prefix may only contain letters, digits and /_+=.@-."
  }
}

variable "secrets_region" {
  description = "Region of the Secrets Manager secrets (the chart's config.region); \"*\" allows any."
  type        = string
  default     = "*"
}

variable "dsql_cluster_arns" {
  description = "Aurora DSQL cluster ARNs the operator may mint tokens for custom Postgres roles on (dsql:DbConnect)."
  type        = list(string)
  default     = []
}

variable "dsql_admin_cluster_arns" {
  description = "Aurora DSQL cluster ARNs the operator may mint admin tokens for (dsql:DbConnectAdmin). Keep empty unless needed."
  type        = list(string)
  default     = []
}

variable "kms_key_arns" {
  description = "Customer-managed KMS keys that encrypt the secrets (spec.secretsManager.kmsKeyId); empty for the aws/secretsmanager key."
  type        = list(string)
  default     = []
}

variable "signing_role_arns" {
  description = "IAM roles (ARNs or ARN patterns, e.g. arn:aws:iam::123456789012:role/dsql-signing-*) DsqlCredentials may name in token.signingRoleArn; empty when none do."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for the IAM role, policy and association."
  type        = map(string)
  default     = {}
}
