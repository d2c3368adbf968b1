"""Classic `import models.inception_resnet_v2` / `--model_def models.inception_resnet_v2`: the network in
facenet_tf.models.inception_resnet_v2."""
from facenet_tf.models.inception_resnet_v2 import inference  # noqa: F401
