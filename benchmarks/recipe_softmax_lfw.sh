#!/usr/bin/env bash
# Margin-softmax (CosFace) training on CPU, proved on LFW View 1: train a classifier of the people of
# peopleDevTrain.txt, evaluate the embeddings on pairsDevTest.txt (different people) with
# validate_on_lfw.py before and after training, and after every epoch during training
# (<logs>/lfw_result.txt, stat.h5 and the TensorBoard curve lfw/accuracy).
#
# The aligned faces are the triplet recipe's (same people, same 110 px MTCNN alignment, same cache
# folder): they are made here only when that cache is missing or incomplete.
#
# Usage: bash benchmarks/recipe_softmax_lfw.sh            (from the project root)
# Settings (environment): SHARED (../shared), CACHE (~/.cache/facenet-tf1compat/recipe_triplet_lfw:
#   the aligned faces), RUNS (~/.cache/facenet-tf1compat/recipe_softmax_lfw: logs and models),
#   EPOCHS (60), DECAY_EPOCHS (20: the learning rate is multiplied by 0.3 this often), EPOCH_SIZE (100
#   steps of 90 images), LOSS (cosface), FLIPPED (1: each face's embedding is concatenated with its
#   mirror image's; 0: not), CLASSIC_METRIC (1: cosine distance of mean-subtracted embeddings, the
#   classic validation flags --distance_metric 1 --subtract_mean; 0: Euclidean distance), AVERAGES (1:
#   evaluate the moving averages of the weights, --lfw_use_moving_averages / --use_moving_averages; 0:
#   the weights), ERASE (0; 1: --random_erase), MODEL (models.small_cnn_flat), WORKERS (2: alignment
#   processes).
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED=${SHARED:-../shared}
CACHE=${CACHE:-$HOME/.cache/facenet-tf1compat/recipe_triplet_lfw}
RUNS=${RUNS:-$HOME/.cache/facenet-tf1compat/recipe_softmax_lfw}
EPOCHS=${EPOCHS:-60}
DECAY_EPOCHS=${DECAY_EPOCHS:-20}
EPOCH_SIZE=${EPOCH_SIZE:-100}
LOSS=${LOSS:-cosface}
FLIPPED=${FLIPPED:-1}
CLASSIC_METRIC=${CLASSIC_METRIC:-1}
AVERAGES=${AVERAGES:-1}
ERASE=${ERASE:-0}
WORKERS=${WORKERS:-2}
MODEL=${MODEL:-models.small_cnn_flat}
ALIGN_SIZE=110      # as benchmarks/prepare_lfw_view1.sh aligns
PROTOCOL=$SHARED/data/lfw_protocol
TRAIN=$CACHE/devtrain_$ALIGN_SIZE
TEST=$CACHE/devtest_$ALIGN_SIZE

# 1. Aligned faces (shared with the triplet recipe; skipped when present).
mkdir -p "$RUNS"
SHARED="$SHARED" CACHE="$CACHE" WORKERS="$WORKERS" bash benchmarks/prepare_lfw_view1.sh

source benchmarks/lfw_evaluation.sh    # EVAL and CHECK from FLIPPED, CLASSIC_METRIC, AVERAGES
AUGMENT=(--random_crop --random_flip)
if [ "$ERASE" = 1 ]; then
    AUGMENT+=(--random_erase)
fi
COMMON=(--data_dir "$TRAIN" --model_def "$MODEL" --image_size 96 --embedding_size 128
        --batch_size 90 --nrof_preprocess_threads 4 --use_fixed_image_standardization
        --loss "$LOSS" --margin_s 30 --optimizer ADAM --weight_decay 5e-4 --keep_probability 0.8)

# 2. DevTest accuracy of the untrained network (one step at a negligible learning rate).
python src/train_softmax.py "${COMMON[@]}" --logs_base_dir "$RUNS/untrained_logs" \
    --models_base_dir "$RUNS/untrained" --max_nrof_epochs 1 --epoch_size 1 --learning_rate 1e-12
python src/validate_on_lfw.py "$TEST" "$(ls -td "$RUNS"/untrained/*/ | head -1)" "${EVAL[@]}"

# 3. Training: the small CNN with a flattening head at 96 px (random crops of the 110 px faces, random
#    flips), CosFace
#    (s = 30, m = 0.35), Adam at 0.05 multiplied by 0.3 every DECAY_EPOCHS epochs, the DevTest check after every
#    epoch. Wall time is printed at the end; the curve is lfw/accuracy in TensorBoard.
START=$(date +%s)
python src/train_softmax.py "${COMMON[@]}" --logs_base_dir "$RUNS/logs" --models_base_dir "$RUNS/models" \
    --max_nrof_epochs "$EPOCHS" --epoch_size "$EPOCH_SIZE" "${AUGMENT[@]}" \
    --learning_rate 0.05 --learning_rate_decay_epochs "$DECAY_EPOCHS" --learning_rate_decay_factor 0.3 \
    --lfw_dir "$TEST" --lfw_pairs "$PROTOCOL/pairsDevTest.txt" --lfw_batch_size 100 "${CHECK[@]}"
echo "training wall time: $(( ($(date +%s) - START) / 60 )) min (including the per-epoch DevTest checks)"

# 4. DevTest accuracy of the last checkpoint with the classic validation script.
LOG=$(ls -td "$RUNS"/logs/*/ | head -1)
python src/validate_on_lfw.py "$TEST" "$(ls -td "$RUNS"/models/*/ | head -1)" "${EVAL[@]}"
echo "DevTest accuracy after each epoch (step, accuracy, validation rate): ${LOG}lfw_result.txt"
echo "TensorBoard: tensorboard --logdir $RUNS/logs"
