# IAM role for dsql-credential-operator, its least-privilege policy, and the EKS Pod Identity
# association for the operator's ServiceAccount. Mirrors deploy/iam/*.json.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id  = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  secret_arns = "arn:${local.partition}:secretsmanager:${var.secrets_region}:${local.account_id}:secret:${trimsuffix(var.secret_prefix, "/")}/*"
  managed_by  = "dsql-credential-operator"
}

data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "AllowEksPodIdentityForTheOperatorServiceAccount"
    effect  = "Allow"
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/eks-cluster-name"
      values   = [var.eks_cluster_name]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubernetes-namespace"
      values   = [var.namespace]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubernetes-service-account"
      values   = [var.service_account]
    }
  }
}

data "aws_iam_policy_document" "operator" {
  statement {
    sid       = "CreateOnlyTaggedSecretsUnderPrefix"
    effect    = "Allow"
    actions   = ["secretsmanager:CreateSecret", "secretsmanager:TagResource"]
    resources = [local.secret_arns]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/dsql.credentials.dev/managed-by"
      values   = [local.managed_by]
    }
  }

  statement {
    sid       = "WriteRestoreDeleteOnlyOwnSecrets"
    effect    = "Allow"
    actions   = ["secretsmanager:PutSecretValue", "secretsmanager:RestoreSecret", "secretsmanager:DeleteSecret"]
    resources = [local.secret_arns]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/dsql.credentials.dev/managed-by"
      values   = [local.managed_by]
    }
  }

  statement {
    sid       = "ReadOwnershipUnderPrefix"
    effect    = "Allow"
    actions   = ["secretsmanager:DescribeSecret"]
    resources = [local.secret_arns]
  }

  dynamic "statement" {
    for_each = length(var.dsql_cluster_arns) > 0 ? [1] : []
    content {
      sid       = "MintTokensForCustomRoles"
      effect    = "Allow"
      actions   = ["dsql:DbConnect"]
      resources = var.dsql_cluster_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.dsql_admin_cluster_arns) > 0 ? [1] : []
    content {
      sid       = "MintAdminTokens"
      effect    = "Allow"
      actions   = ["dsql:DbConnectAdmin"]
      resources = var.dsql_admin_cluster_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.signing_role_arns) > 0 ? [1] : []
    content {
      # token.signingRoleArn: the operator assumes these roles with exactly its two session tags.
      sid       = "AssumeSigningRolesWithCredentialTags"
      effect    = "Allow"
      actions   = ["sts:AssumeRole", "sts:TagSession"]
      resources = var.signing_role_arns

      condition {
        test     = "StringLike"
        variable = "aws:RequestTag/dsql-namespace"
        values   = ["?*"]
      }
      condition {
        test     = "StringLike"
        variable = "aws:RequestTag/dsql-credential"
        values   = ["?*"]
      }
      condition {
        test     = "ForAllValues:StringEquals"
        variable = "aws:TagKeys"
        values   = ["dsql-namespace", "dsql-credential"]
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "UseCustomerKeyOnlyThroughSecretsManager"
      effect    = "Allow"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = var.kms_key_arns

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        # Secrets Manager in the key's own region (KMS keys are regional).
        values = distinct([for arn in var.kms_key_arns : "secretsmanager.${split(":", arn)[3]}.amazonaws.com"])
      }
    }
  }
}

resource "aws_iam_role" "operator" {
  name                 = var.role_name
  description          = "dsql-credential-operator in ${var.eks_cluster_name}/${var.namespace} (EKS Pod Identity)"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_policy" "operator" {
  name        = var.role_name
  description = "Least privilege for dsql-credential-operator: secrets under ${var.secret_prefix}/, DSQL token minting"
  policy      = data.aws_iam_policy_document.operator.json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "operator" {
  role       = aws_iam_role.operator.name
  policy_arn = aws_iam_policy.operator.arn
}

resource "aws_eks_pod_identity_association" "operator" {
  cluster_name    = var.eks_cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.operator.arn
  tags            = var.tags
}
