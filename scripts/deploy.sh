#!/usr/bin/env bash
# Deploys the stack to the cluster KUBECONFIG points at (the Jenkinsfile's
# Deploy stage; usable by hand):
#
#   IMAGE_REGISTRY=... IMAGE_TAG=... ENV_FILE=/path/to/filled/environment.env scripts/deploy.sh
#
# Creates or updates the Secret `credentials` from ENV_FILE (when given; else it
# must exist already), applies the manifests with the images pointed at
# IMAGE_REGISTRY:IMAGE_TAG, and waits for the rollout.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
registry="${IMAGE_REGISTRY:?IMAGE_REGISTRY is required}"
tag="${IMAGE_TAG:?IMAGE_TAG is required}"

if [ -n "${ENV_FILE:-}" ]; then
  kubectl create secret generic credentials --from-env-file="$ENV_FILE" --dry-run=client -o yaml \
    | kubectl apply -f -
else
  kubectl get secret credentials >/dev/null \
    || { echo "no Secret 'credentials': create it from environment.env or set ENV_FILE" >&2; exit 1; }
fi
scripts/render-manifests.sh "$registry" "$tag" | kubectl apply -f -
for workload in statefulset/postgres deployment/redis deployment/api-rest deployment/api-cache; do
  kubectl rollout status "$workload" --timeout=300s
done
