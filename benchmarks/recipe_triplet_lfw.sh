#!/usr/bin/env bash
# Triplet-loss training on CPU, proved on LFW View 1: train on the people of peopleDevTrain.txt,
# evaluate the embeddings on pairsDevTest.txt (different people) with validate_on_lfw.py before and
# after training, and after every epoch during training (<logs>/lfw_result.txt and the TensorBoard
# curve lfw/accuracy). The aligned faces go to a cache folder outside git and are reused when present.
#
# Usage: bash benchmarks/recipe_triplet_lfw.sh            (from the project root)
# Settings (environment): SHARED (../shared), CACHE (~/.cache/facenet-tf1compat/recipe_triplet_lfw:
#   the aligned faces), RUNS (~/.cache/facenet-tf1compat/recipe_triplet_runs: logs and models),
#   EPOCHS (50, about 40 minutes here), EPOCH_SIZE (100 steps of 90 images), MINING (batch: triplets
#   mined inside each batch; rounds: the classic embed-select-train rounds of 30 people x 10 images),
#   IMAGES_PER_PERSON (6), SELECTION (semihard),
#   LR (0.1), DECAY_EPOCHS (20: the learning rate is multiplied by 0.3 this often), MIN_IMAGES (2:
#   people with fewer training images are left out), MODEL (models.small_cnn), FLIPPED, CLASSIC_METRIC,
#   AVERAGES (0: plain embeddings, Euclidean distance, the weights; 1 each as recipe_softmax_lfw.sh),
#   WORKERS (2: alignment processes).
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED=${SHARED:-../shared}
CACHE=${CACHE:-$HOME/.cache/facenet-tf1compat/recipe_triplet_lfw}
RUNS=${RUNS:-$HOME/.cache/facenet-tf1compat/recipe_triplet_runs}
EPOCHS=${EPOCHS:-50}
MINING=${MINING:-batch}
IMAGES_PER_PERSON=${IMAGES_PER_PERSON:-6}
EPOCH_SIZE=${EPOCH_SIZE:-100}
SELECTION=${SELECTION:-semihard}
LR=${LR:-0.1}
DECAY_EPOCHS=${DECAY_EPOCHS:-20}
MIN_IMAGES=${MIN_IMAGES:-2}
WORKERS=${WORKERS:-2}
MODEL=${MODEL:-models.small_cnn}
FLIPPED=${FLIPPED:-0}
CLASSIC_METRIC=${CLASSIC_METRIC:-0}
AVERAGES=${AVERAGES:-0}
ALIGN_SIZE=110      # as benchmarks/prepare_lfw_view1.sh aligns
PROTOCOL=$SHARED/data/lfw_protocol
TRAIN=$CACHE/devtrain_$ALIGN_SIZE
TEST=$CACHE/devtest_$ALIGN_SIZE

# 1. Aligned DevTrain and DevTest faces (skipped when present).
mkdir -p "$RUNS"
SHARED="$SHARED" CACHE="$CACHE" MIN_IMAGES="$MIN_IMAGES" WORKERS="$WORKERS" bash benchmarks/prepare_lfw_view1.sh

source benchmarks/lfw_evaluation.sh    # EVAL and CHECK from FLIPPED, CLASSIC_METRIC, AVERAGES
COMMON=(--data_dir "$TRAIN" --model_def "$MODEL" --image_size 96 --embedding_size 128
        --batch_size 90 --people_per_batch 30 --images_per_person "$IMAGES_PER_PERSON" --use_fixed_image_standardization
        --triplet_mining "$MINING" --triplet_selection "$SELECTION" --alpha 0.2 --optimizer ADAM --weight_decay 1e-4 --keep_probability 1.0)

# 2. DevTest accuracy of the untrained network (one step at a negligible learning rate).
python src/train_tripletloss.py "${COMMON[@]}" --logs_base_dir "$RUNS/untrained_logs" \
    --models_base_dir "$RUNS/untrained" --max_nrof_epochs 1 --epoch_size 1 --learning_rate 1e-12
python src/validate_on_lfw.py "$TEST" "$(ls -td "$RUNS"/untrained/*/ | head -1)" "${EVAL[@]}"

# 3. Training: the small CNN at 96 px (random 96 px crops of the 110 px faces, random flips), every
#    semi-hard triplet of each 90-image batch of people with up to 6 images each (MINING=rounds: the
#    classic rounds of 30 people x IMAGES_PER_PERSON), Adam (classic epsilon 0.1, hence the large rate)
#    multiplied by 0.3 every DECAY_EPOCHS epochs, the DevTest check after every epoch. Wall time is
#    printed at the end; the curve is lfw/accuracy in TensorBoard.
START=$(date +%s)
python src/train_tripletloss.py "${COMMON[@]}" --logs_base_dir "$RUNS/logs" --models_base_dir "$RUNS/models" \
    --max_nrof_epochs "$EPOCHS" --epoch_size "$EPOCH_SIZE" --random_crop --random_flip \
    --learning_rate "$LR" --learning_rate_decay_epochs "$DECAY_EPOCHS" --learning_rate_decay_factor 0.3 \
    --lfw_dir "$TEST" --lfw_pairs "$PROTOCOL/pairsDevTest.txt" "${CHECK[@]}"
echo "training wall time: $(( ($(date +%s) - START) / 60 )) min (including the per-epoch DevTest checks)"

# 4. DevTest accuracy of the last checkpoint with the classic validation script.
LOG=$(ls -td "$RUNS"/logs/*/ | head -1)
python src/validate_on_lfw.py "$TEST" "$(ls -td "$RUNS"/models/*/ | head -1)" "${EVAL[@]}"
echo "DevTest accuracy after each epoch (step, accuracy, validation rate): ${LOG}lfw_result.txt"
echo "TensorBoard: tensorboard --logdir $RUNS/logs"
