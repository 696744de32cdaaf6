module dsql-credential-operator/tests/neighbour-crds

go 1.26.0

require (
	github.com/prometheus-operator/prometheus-operator v0.85.0
	sigs.k8s.io/secrets-store-csi-driver v1.5.4
)
