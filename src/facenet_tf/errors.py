"""The library's exception: an error caused by the input (a path, a flag value, a file's content)
rather than by the code. Library functions raise it with a message that names what is wrong;
`facenet_tf.cli.run` prints that message as one line `<script>: error: <message>` (exit code 2).
It is the library's one exception for bad input (recordio.RecordFormatError narrows it to a bad
record file). The other exception classes are internal signals that never reach a tool's caller as
they are: images.ImageReadError (one unreadable image; tools note it and go on, or raise
FaceNetError), and the refusals of the restricted unpicklers (pickle.UnpicklingError subclasses,
turned into FaceNetError by their loaders)."""


class FaceNetError(Exception):
    """Bad input (a path, a flag value, a file); the message is shown to the user as one line."""


def first_line(error):
    """The first line of an exception's message (its type's name when it has none): what a one-line
    FaceNetError quotes of an error raised by a library (TensorFlow, protobuf, onnxruntime, ...)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
