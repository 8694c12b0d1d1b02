#!/usr/bin/env bash
# Prints kubernetes/*.yaml with the images pointed at a registry and tag, for
# `kubectl apply -f -`:
#
#   scripts/render-manifests.sh ghcr.io/acme/air-quality-api 1.0.0 | kubectl apply -f -
#
# Without arguments the manifests come out unchanged (air-quality-api/<service>:latest,
# the names docker-compose builds), which is what `kubectl apply -f kubernetes/` uses.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
registry="${1:-air-quality-api}"
tag="${2:-latest}"
first=1
for file in kubernetes/*.yaml; do
  [ "$first" = 1 ] || echo "---"
  first=0
  sed -E "s#^(\s+image: )air-quality-api/(api-rest|api-cache):latest\$#\1${registry}/\2:${tag}#" "$file"
done
