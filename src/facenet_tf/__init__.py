"""facenet-tf1compat: the classic FaceNet tools as one package.

Where things are (one module per concern):
- align/: MTCNN detection (detect_face), crops and landmark warps (aligner), aligning a dataset
  folder (dataset_alignment; the `facenet-align` tool);
- models/: the networks (inception_resnet_v1, ...) with the published checkpoints' variable names;
- training/: everything only training uses (losses, triplets, input_pipeline, the epoch loop, ...);
- images, dataset, pairs, verification_sets, recordio: reading photos, folder layouts, LFW pairs,
  .bin sets, record files; model_io, keras_import: model files; embedding: batched embedding;
  evaluation: LFW metrics; errors: FaceNetError, the one exception for bad input; cli: running a
  tool's main; tf_setup: TensorFlow set-up and sessions;
- one module per tool, named as its command: `facenet-validate` is facenet_tf.validate
  (`python -m facenet_tf.validate`), `facenet-align` is facenet_tf.align (docs/package.md).

The Python API (docs/api.md): `from facenet_tf import MTCNN, FaceNet` (and the helpers
`embed_faces`, `distance`, `same_person`) are exported lazily from facenet_tf.api: the first use of
one of these names imports TensorFlow, `import facenet_tf` alone does not.

Importing this package does not import TensorFlow. Code that builds graphs calls
`facenet_tf.tf_setup.configure()` first (the tools do; the graph-building modules do when they are
imported): quiet import, oneDNN, TF1 graph semantics (see tf_setup).
"""
__version__ = '1.0.0'

_API = ('MTCNN', 'FaceNet', 'embed_faces', 'distance', 'same_person')


def __getattr__(name):
    """The API names, imported from facenet_tf.api on first use (and TensorFlow with them)."""
    if name in _API:
        from facenet_tf import api
        return getattr(api, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


def __dir__():
    return sorted(list(globals()) + list(_API))
