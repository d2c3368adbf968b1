#!/usr/bin/env bash
# Aligned LFW View 1 faces for the CPU training recipes: the people of peopleDevTrain.txt with
# MIN_IMAGES+ images (training) and the images of pairsDevTest.txt (evaluation, other people),
# MTCNN-aligned at 110 px with margin 32 into $CACHE/devtrain_110 and $CACHE/devtest_110. Images an
# earlier run aligned are skipped, so calling it again is cheap.
#
# Usage: bash benchmarks/prepare_lfw_view1.sh            (from the project root)
# Settings (environment): SHARED (../shared), CACHE (~/.cache/facenet-tf1compat/recipe_triplet_lfw),
#   MIN_IMAGES (2), WORKERS (2: alignment processes).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
CACHE=${CACHE:-$HOME/.cache/facenet-tf1compat/recipe_triplet_lfw}
MIN_IMAGES=${MIN_IMAGES:-2}
WORKERS=${WORKERS:-2}
ALIGN_SIZE=110      # aligned size: training takes random 96 px crops, evaluation the central 96 px
MARGIN=32           # pixels of the original image around the detected box (the classic LFW setting)
mkdir -p "$CACHE"
python - "$SHARED/data/lfw_deepfunneled" "$SHARED/data/lfw_protocol" "$CACHE" "$MIN_IMAGES" <<'PY'
import os, sys
lfw, protocol, cache, min_images = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def link(name, number, root):
    stem = '%s_%04d.jpg' % (name, int(number))
    os.makedirs(os.path.join(root, name), exist_ok=True)
    dst = os.path.join(root, name, stem)
    if not os.path.lexists(dst):
        os.symlink(os.path.abspath(os.path.join(lfw, name, stem)), dst)

with open(os.path.join(protocol, 'peopleDevTrain.txt')) as f:
    for line in f.read().splitlines()[1:]:
        if line.strip():
            name, count = line.split()
            if int(count) >= min_images:
                for i in range(1, int(count) + 1):
                    link(name, i, os.path.join(cache, 'devtrain_raw'))
with open(os.path.join(protocol, 'pairsDevTest.txt')) as f:
    for line in f.read().splitlines()[1:]:
        p = line.split()
        sides = [(p[0], p[1]), (p[0], p[2])] if len(p) == 3 else [(p[0], p[1]), (p[2], p[3])]
        for name, number in sides:
            link(name, number, os.path.join(cache, 'devtest_raw'))
PY
for part in devtrain devtest; do
    python src/align/align_dataset_mtcnn.py "$CACHE/${part}_raw" "$CACHE/${part}_${ALIGN_SIZE}" \
        --image_size $ALIGN_SIZE --margin $MARGIN --num_workers "$WORKERS"
done
