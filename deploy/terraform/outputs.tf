output "role_arn" {
  description = "ARN of the operator's IAM role. Tokens are signed with it, so custom Postgres roles must be granted to it: AWS IAM GRANT <role> TO '<this ARN>'."
  value       = aws_iam_role.operator.arn
}

output "policy_arn" {
  description = "ARN of the operator's IAM policy."
  value       = aws_iam_policy.operator.arn
}

output "pod_identity_association_id" {
  description = "ID of the EKS Pod Identity association for <namespace>/<service_account>."
  value       = aws_eks_pod_identity_association.operator.association_id
}
