"""The library's exception: an error caused by the input (a path, a flag value, a file's content)
rather than by the code. Library functions raise it with a message that names what is wrong;
`facenet_tf.cli.run` prints that message as one line `<script>: error: <message>` (exit code 2).
`facenet_tf.cli.UserError` is the same class under its older name."""


class FaceNetError(Exception):
    """Bad input (a path, a flag value, a file); the message is shown to the user as one line."""
