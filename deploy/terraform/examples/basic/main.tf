# Example: the operator in dsql-system, minting tokens for one DSQL cluster's custom roles.
terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.31"
    }
  }
}

provider "aws" {
  region = "us-east-1"
}

module "dsql_credential_operator" {
  source = "../.."

  eks_cluster_name  = "my-eks-cluster"
  namespace         = "dsql-system"
  service_account   = "dsql-credential-operator"
  secret_prefix     = "dsql"
  secrets_region    = "us-east-1"
  dsql_cluster_arns = ["arn:aws:dsql:us-east-1:111122223333:cluster/abcdefghijklmnopqrstuvwxyz"]
  # dsql_admin_cluster_arns = [...]   # only if a DsqlCredential uses role: admin
  # kms_key_arns            = [...]   # only if secrets use a customer-managed key
}

output "role_arn" {
  value = module.dsql_credential_operator.role_arn
}
