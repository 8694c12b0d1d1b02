#!/usr/bin/env bash
# Builds or pushes the two images.
#
#   scripts/images.sh build    # docker build --target <service> -t $IMAGE_REGISTRY/<service>:$IMAGE_TAG
#   scripts/images.sh push     # docker push both (after `docker login`)
#
# IMAGE_REGISTRY defaults to air-quality-api (local names, as docker-compose
# and kubernetes/ use them); IMAGE_TAG to latest. For a registry, e.g.:
#   IMAGE_REGISTRY=ghcr.io/acme/air-quality-api IMAGE_TAG=1.0.0 scripts/images.sh build
set -Eeuo pipefail
cd "$(dirname "$0")/.."
registry="${IMAGE_REGISTRY:-air-quality-api}"
tag="${IMAGE_TAG:-latest}"

case "${1:-}" in
  build)
    for service in api-rest api-cache; do
      docker build --target "$service" -t "$registry/$service:$tag" .
    done ;;
  push)
    for service in api-rest api-cache; do
      docker push "$registry/$service:$tag"
    done ;;
  *) echo "usage: scripts/images.sh build|push" >&2; exit 2 ;;
esac
