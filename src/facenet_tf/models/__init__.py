"""Network definitions on plain TF1-compat ops with the variable names of the published checkpoints:
inception_resnet_v1 (the published FaceNet models), inception_resnet_v2, small_cnn (tests and quick
runs); layers holds the few slim-style helpers they share. `--model_def models.<name>` (the classic
spelling) and `facenet_tf.models.<name>` name the same module."""
