"""Shared test setup: the local-cluster fixtures (local_cluster, namespace, sa_kubeconfig,
kubectl, ...) come from trainyard_local's pytest plugin; see deploy/local/README.md."""

pytest_plugins = ["trainyard_local.pytest_plugin", "integration.operator_fixtures"]
