"""Classic `import models.inception_resnet_v1` / `--model_def models.inception_resnet_v1`: the network in
facenet_tf.models.inception_resnet_v1."""
from facenet_tf.models.inception_resnet_v1 import inference  # noqa: F401
