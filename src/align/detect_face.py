"""Classic `import align.detect_face` (with src/ on the path): MTCNN from facenet_tf.align.detect_face
(create_mtcnn, detect_face, bulk_detect_face and the batched MTCNN object)."""
from facenet_tf.align.detect_face import MTCNN, bulk_detect_face, create_mtcnn, detect_face  # noqa: F401
