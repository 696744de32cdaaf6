terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.31" # aws_eks_pod_identity_association
    }
  }
}
