#!/usr/bin/env bash
# Offline checks of what deploys the stack (no Docker engine or cluster needed):
#  - every Kubernetes manifest against the Kubernetes schemas (strict: unknown
#    fields fail), for the oldest and newest versions we support;
#  - kubectl's own parsing of kubernetes/ (through kustomize), and the Secret
#    exactly as the README creates it (--dry-run=client);
#  - docker-compose.yml against the Compose specification schema;
#  - every shell script with shellcheck.
# The validators come from PyPI, pinned in scripts/requirements-checks.txt, into
# a virtualenv under target/. The consistency of these files with the code (env
# vars, images, generated ConfigMaps) is checked by the Rust tests.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

venv=target/check-venv
if [ ! -x "$venv/bin/kubernetes-validate" ] || ! cmp -s scripts/requirements-checks.txt "$venv/requirements.txt"; then
  echo "==> installing the validators into $venv"
  command -v python3 >/dev/null || { as_root apt-get update -qq; as_root apt-get install -y -qq python3 python3-venv >/dev/null; }
  python3 -m venv "$venv" 2>/dev/null || { as_root apt-get install -y -qq python3-venv >/dev/null; python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-checks.txt
  cp scripts/requirements-checks.txt "$venv/requirements.txt"
fi

echo "==> Kubernetes manifests against the schemas (1.29 and 1.37, strict)"
for version in 1.29.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" kubernetes/*.yaml kubernetes/optional/*.yaml
done

echo "==> docker-compose.yml against the Compose specification"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

if ! command -v kubectl >/dev/null; then
  echo "kubectl is not installed: install it (https://kubernetes.io/docs/tasks/tools/) to run the last checks" >&2
  exit 1
fi
echo "==> the Secret, as the README creates it"
kubectl create secret generic credentials --from-env-file=environment.env --dry-run=client -o yaml >/dev/null

echo "==> kubectl parses kubernetes/ (kustomize build of a copy)"
copy="$(mktemp -d)"
trap 'rm -rf "$copy"' EXIT
cp kubernetes/*.yaml "$copy/"
{ echo "resources:"; for f in kubernetes/*.yaml; do echo "  - $(basename "$f")"; done; } > "$copy/kustomization.yaml"
objects=$(kubectl kustomize "$copy" | grep -c '^kind:')
echo "    $objects objects"

echo "==> shellcheck"
"$venv/bin/shellcheck" -x scripts/*.sh bench/*.sh postgres/init-script.sh .ci/run

echo "==> deployment checks passed"
