# Sourced by the LFW View 1 recipes: EVAL, the validate_on_lfw.py flags that evaluate DevTest as the
# recipe file's per-epoch check does (image size, standardisation, mirrored embeddings, distance,
# mean subtraction, moving averages: the recipe's image_size, use_fixed_image_standardization and
# lfw_* keys). Needs CONFIG (the recipe file) and PROTOCOL.
mapfile -t EVAL < <(python - "$CONFIG" "$PROTOCOL/pairsDevTest.txt" <<'PY'
import sys
import tomllib
with open(sys.argv[1], 'rb') as f:
    recipe = tomllib.load(f)
flags = ['--lfw_pairs', sys.argv[2], '--image_size', str(recipe.get('image_size', 160))]
for key, flag in (('use_fixed_image_standardization', '--use_fixed_image_standardization'),
                  ('lfw_use_flipped_images', '--use_flipped_images'), ('lfw_subtract_mean', '--subtract_mean'),
                  ('lfw_use_moving_averages', '--use_moving_averages')):
    if recipe.get(key):
        flags.append(flag)
if recipe.get('lfw_distance_metric'):
    flags += ['--distance_metric', str(recipe['lfw_distance_metric'])]
print('\n'.join(flags))
PY
)
