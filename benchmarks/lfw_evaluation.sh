# Sourced by the LFW View 1 recipes: the DevTest evaluation flags from the settings FLIPPED (each
# face's embedding concatenated with its mirror image's), CLASSIC_METRIC (cosine distance of
# mean-subtracted embeddings, as the classic validation command of the published models) and
# AVERAGES (the moving averages of the weights), each 0 or 1. Sets EVAL (validate_on_lfw.py) and CHECK
# (the training scripts' per-epoch check); needs PROTOCOL.
EVAL=(--lfw_pairs "$PROTOCOL/pairsDevTest.txt" --image_size 96 --use_fixed_image_standardization)
CHECK=()
if [ "$FLIPPED" = 1 ]; then
    EVAL+=(--use_flipped_images)
    CHECK+=(--lfw_use_flipped_images)
fi
if [ "$CLASSIC_METRIC" = 1 ]; then
    EVAL+=(--distance_metric 1 --subtract_mean)
    CHECK+=(--lfw_distance_metric 1 --lfw_subtract_mean)
fi
if [ "$AVERAGES" = 1 ]; then
    EVAL+=(--use_moving_averages)
    CHECK+=(--lfw_use_moving_averages)
fi
