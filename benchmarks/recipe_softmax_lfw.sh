#!/usr/bin/env bash
# Margin-softmax (CosFace) training on CPU, proved on LFW View 1: the recipe is
# data/recipes/cosface_lfw_view1.toml. Trains a classifier of the people of peopleDevTrain.txt and
# evaluates the embeddings on pairsDevTest.txt (other people) with validate_on_lfw.py before
# training, after every epoch (<logs>/lfw_result.txt, stat.h5, TensorBoard lfw/accuracy), and after
# training (the last checkpoint and the best-checking one, <model>/best).
#
# Usage: bash benchmarks/recipe_softmax_lfw.sh [train_softmax.py flags overriding the recipe]
#   e.g. --max_nrof_epochs 30, --loss arcface, --random_erase, --model_def models.small_cnn
# Environment (data and folders only): SHARED (../shared), CACHE (~/.cache/facenet-tf1compat/
#   recipe_triplet_lfw: the aligned faces, shared with the triplet recipe), RUNS
#   (~/.cache/facenet-tf1compat/recipe_softmax_lfw: logs and models), WORKERS (2: alignment processes).
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED=${SHARED:-../shared}
CACHE=${CACHE:-$HOME/.cache/facenet-tf1compat/recipe_triplet_lfw}
RUNS=${RUNS:-$HOME/.cache/facenet-tf1compat/recipe_softmax_lfw}
WORKERS=${WORKERS:-2}
CONFIG=data/recipes/cosface_lfw_view1.toml
PROTOCOL=$SHARED/data/lfw_protocol
TRAIN=$CACHE/devtrain_110        # as benchmarks/prepare_lfw_view1.sh aligns
TEST=$CACHE/devtest_110

# 1. Aligned faces (shared with the triplet recipe; skipped when present).
mkdir -p "$RUNS"
SHARED="$SHARED" CACHE="$CACHE" WORKERS="$WORKERS" bash benchmarks/prepare_lfw_view1.sh
source benchmarks/lfw_evaluation.sh    # EVAL from the recipe file

# 2. DevTest accuracy of the untrained network (one step at a negligible learning rate).
python src/train_softmax.py --config "$CONFIG" "$@" --data_dir "$TRAIN" --logs_base_dir "$RUNS/untrained_logs" \
    --models_base_dir "$RUNS/untrained" --max_nrof_epochs 1 --epoch_size 1 --learning_rate 1e-12
python src/validate_on_lfw.py "$TEST" "$(ls -td "$RUNS"/untrained/*/ | head -1)" "${EVAL[@]}"

# 3. Training with the DevTest check after every epoch; wall time printed at the end.
START=$(date +%s)
python src/train_softmax.py --config "$CONFIG" --data_dir "$TRAIN" --logs_base_dir "$RUNS/logs" \
    --models_base_dir "$RUNS/models" --lfw_dir "$TEST" --lfw_pairs "$PROTOCOL/pairsDevTest.txt" "$@"
echo "training wall time: $(( ($(date +%s) - START) / 60 )) min (including the per-epoch DevTest checks)"

# 4. DevTest accuracy of the last and of the best-checking checkpoint with the classic validation script.
LOG=$(ls -td "$RUNS"/logs/*/ | head -1)
MODEL=$(ls -td "$RUNS"/models/*/ | head -1)
python src/validate_on_lfw.py "$TEST" "$MODEL" "${EVAL[@]}"
python src/validate_on_lfw.py "$TEST" "${MODEL}best" "${EVAL[@]}"
echo "DevTest accuracy after each epoch (step, accuracy, validation rate): ${LOG}lfw_result.txt"
echo "TensorBoard: tensorboard --logdir $RUNS/logs"
