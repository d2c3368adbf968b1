"""small_cnn with a flattening head: the last feature map (3x3 at 96 px, 4x4 at 112) is flattened
instead of averaged, so the embedding layer knows where on the aligned face each feature was found (as
the fully connected embedding of the insightface networks). Same body and variable names; the
`Bottleneck` weights are [grid * grid * 512, bottleneck_layer_size] (2.5 M parameters at 96 px, 128-D).
On aligned faces it learns faster and generalises better than the average-pooled head (README, CPU
recipe); it needs the image size it was trained at.
"""
from facenet_tf.models import small_cnn

SCOPE = small_cnn.SCOPE


def inference(images, keep_probability, phase_train=True, bottleneck_layer_size=128, weight_decay=0.0,
              reuse=None):
    """As small_cnn.inference, with the last feature map flattened instead of average-pooled."""
    return small_cnn.build(images, keep_probability, phase_train, bottleneck_layer_size, weight_decay, reuse,
                           flatten=True)
