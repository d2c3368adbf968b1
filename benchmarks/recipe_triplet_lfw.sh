#!/usr/bin/env bash
# Triplet-loss training on CPU, proved on LFW View 1: the recipe is data/recipes/triplet_lfw_view1.toml.
# Trains on the people of peopleDevTrain.txt and evaluates the embeddings on pairsDevTest.txt (other
# people) with validate_on_lfw.py before training, after every epoch (<logs>/lfw_result.txt,
# TensorBoard lfw/accuracy), and after training (the last checkpoint and the best-checking one,
# <model>/best). The aligned faces go to a cache folder outside git and are reused when present.
#
# Usage: bash benchmarks/recipe_triplet_lfw.sh [train_tripletloss.py flags overriding the recipe]
#   e.g. --triplet_mining rounds --images_per_person 10 --max_nrof_epochs 55 (the classic rounds)
# Environment (data and folders only): SHARED (../shared), CACHE (~/.cache/facenet-tf1compat/
#   recipe_triplet_lfw: the aligned faces), RUNS (~/.cache/facenet-tf1compat/recipe_triplet_runs: logs
#   and models), MIN_IMAGES (2: people with fewer training images are left out), WORKERS (2:
#   alignment processes).
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED=${SHARED:-../shared}
CACHE=${CACHE:-$HOME/.cache/facenet-tf1compat/recipe_triplet_lfw}
RUNS=${RUNS:-$HOME/.cache/facenet-tf1compat/recipe_triplet_runs}
MIN_IMAGES=${MIN_IMAGES:-2}
WORKERS=${WORKERS:-2}
CONFIG=data/recipes/triplet_lfw_view1.toml
PROTOCOL=$SHARED/data/lfw_protocol
TRAIN=$CACHE/devtrain_110        # as benchmarks/prepare_lfw_view1.sh aligns
TEST=$CACHE/devtest_110

# 1. Aligned DevTrain and DevTest faces (skipped when present).
mkdir -p "$RUNS"
SHARED="$SHARED" CACHE="$CACHE" MIN_IMAGES="$MIN_IMAGES" WORKERS="$WORKERS" bash benchmarks/prepare_lfw_view1.sh
source benchmarks/lfw_evaluation.sh    # EVAL from the recipe file

# 2. DevTest accuracy of the untrained network (one step at a negligible learning rate).
python src/train_tripletloss.py --config "$CONFIG" "$@" --data_dir "$TRAIN" \
    --logs_base_dir "$RUNS/untrained_logs" --models_base_dir "$RUNS/untrained" \
    --max_nrof_epochs 1 --epoch_size 1 --learning_rate 1e-12
python src/validate_on_lfw.py "$TEST" "$(ls -td "$RUNS"/untrained/*/ | head -1)" "${EVAL[@]}"

# 3. Training with the DevTest check after every epoch; wall time printed at the end.
START=$(date +%s)
python src/train_tripletloss.py --config "$CONFIG" --data_dir "$TRAIN" --logs_base_dir "$RUNS/logs" \
    --models_base_dir "$RUNS/models" --lfw_dir "$TEST" --lfw_pairs "$PROTOCOL/pairsDevTest.txt" "$@"
echo "training wall time: $(( ($(date +%s) - START) / 60 )) min (including the per-epoch DevTest checks)"

# 4. DevTest accuracy of the last and of the best-checking checkpoint with the classic validation script.
LOG=$(ls -td "$RUNS"/logs/*/ | head -1)
MODEL=$(ls -td "$RUNS"/models/*/ | head -1)
python src/validate_on_lfw.py "$TEST" "$MODEL" "${EVAL[@]}"
python src/validate_on_lfw.py "$TEST" "${MODEL}best" "${EVAL[@]}"
echo "DevTest accuracy after each epoch (step, accuracy, validation rate): ${LOG}lfw_result.txt"
echo "TensorBoard: tensorboard --logdir $RUNS/logs"
