#!/usr/bin/env bash
# Builds Concord's container image: the static binary on the host, then a
# FROM scratch image around it. Usage: deploy/docker/build.sh [TAG]
# (default concord:dev). Needs go and a Docker engine; pulls nothing.
set -euo pipefail
tag=${1:-concord:dev}
root=$(cd "$(dirname "$0")/../.." && pwd)

ctx=$(mktemp -d "${TMPDIR:-/tmp}/concord-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

(cd "$root" && CGO_ENABLED=0 go build -o "$ctx/concord" ./cmd/concord)
mkdir -m 0700 "$ctx/data"
cp "$root/deploy/docker/Dockerfile" "$ctx/Dockerfile"

# The classic builder needs no buildx plugin; BuildKit works too.
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi
old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
docker build --quiet --tag "$tag" "$ctx" >/dev/null
new=$(docker image inspect --format '{{.Id}}' "$tag")
# The previous build of this tag would be left behind untagged.
if [ -n "$old" ] && [ "$old" != "$new" ]; then
  docker image rm "$old" >/dev/null 2>&1 || true
fi
echo "built $tag"
