"""Library modules behind the facenet-tf1compat scripts.

One module per concern: images (reading, standardisation), dataset (folder layouts), pairs (LFW
pairs files), model_io (loading, saving, freezing), embedding, progress (progress lines), files
(atomic writes), errors (the library's exception), cli (running a script's main, flag validators),
tf_setup (TensorFlow set-up and session settings). Detection lives in align/, networks in models/.

Importing this package does not import TensorFlow. Code that builds graphs calls
`facenet_tf.tf_setup.configure()` first (the scripts do; the graph-building modules do when they are
imported): quiet import, oneDNN, TF1 graph semantics (see tf_setup).
"""
