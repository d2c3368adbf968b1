"""Running a script's main: bad input becomes one clear line on stderr, never a traceback.
FaceNetError (bad input the library recognised) and OSError (a path that is missing, unreadable, a
folder, or a full disk) print `<script>: error: <reason>` and exit 2.

Also the argparse validators the scripts use as `type=` for numeric flags (positive_int,
non_negative_int, int_at_least, int_between, non_negative_float, fraction): a bad value is reported
by argparse itself, as `<script>: error: argument --flag: <reason>` after the usage line, exit code 2.

Every tool's parser is `ArgumentParser` (flags spelt in full, unknown flags named first); the tool
modules import without TensorFlow, so `--help` and flag errors come before it loads.
"""
import argparse
import os
import sys

from facenet_tf.errors import FaceNetError


def run(main, args, prog=None):
    """Call main(args); turn FaceNetError / KeyboardInterrupt into an exit code with a one-line message."""
    prog = prog or os.path.basename(sys.argv[0])
    try:
        code = main(args)
    except FaceNetError as e:
        sys.stderr.write('%s: error: %s\n' % (prog, e))
        return 2
    except OSError as e:  # a path the user gave: missing, unreadable, a folder, a full disk
        sys.stderr.write('%s: error: %s\n' % (prog, os_error_line(e)))
        return 2
    except MemoryError:
        sys.stderr.write('%s: error: out of memory (lower the batch or size flags)\n' % prog)
        return 2
    except KeyboardInterrupt:
        sys.stderr.write('%s: interrupted\n' % prog)
        return 130
    return 0 if code is None else int(code)


def command(main, parse_arguments, argv=None):
    """A tool's whole command line (argv, default sys.argv[1:]) parsed and run through `run`: the
    exit code. Parsing runs inside `run`, so a bad recipe file (--config) is one line as well."""
    argv = sys.argv[1:] if argv is None else argv
    return run(lambda a: main(expand_user(parse_arguments(a))), argv)


def expand_user(args):
    """The parsed arguments with a leading `~` of every string value (and of each string in a list)
    expanded, as the shell would have done: one rule for every path flag and positional, quoted or
    not, applied once here at the command line's boundary."""
    for name, value in list(getattr(args, '__dict__', {}).items()):
        if isinstance(value, str) and value.startswith('~'):
            setattr(args, name, os.path.expanduser(value))
        elif isinstance(value, list) and any(isinstance(v, str) and v.startswith('~') for v in value):
            setattr(args, name, [os.path.expanduser(v) if isinstance(v, str) and v.startswith('~') else v
                                 for v in value])
    return args


def os_error_line(e):
    """One line for an OSError: its reason and the file(s) it names."""
    reason = e.strerror or str(e) or type(e).__name__
    names = [n for n in (e.filename, e.filename2) if n is not None]
    return '%s: %s' % (reason, ' -> '.join(str(n) for n in names)) if names else reason


def _number(text, kind):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError('invalid %s value: %r' % (kind.__name__, text))


def int_at_least(minimum):
    """An argparse type: an integer >= minimum."""
    def parse(text):
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError('must be at least %d, got %d' % (minimum, value))
        return value
    parse.__name__ = 'int_at_least_%d' % minimum
    return parse


def int_between(low, high):
    """An argparse type: an integer in [low, high]."""
    def parse(text):
        value = _number(text, int)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError('must be between %d and %d, got %d' % (low, high, value))
        return value
    parse.__name__ = 'int_between_%d_%d' % (low, high)
    return parse


positive_int = int_at_least(1)
positive_int.__name__ = 'positive_int'
non_negative_int = int_at_least(0)
non_negative_int.__name__ = 'non_negative_int'


def non_negative_float(text):
    """An argparse type: a float >= 0."""
    value = _number(text, float)
    if not value >= 0:
        raise argparse.ArgumentTypeError('must be >= 0, got %g' % value)
    return value


def positive_float(text):
    """An argparse type: a float > 0."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError('must be > 0, got %g' % value)
    return value


class ArgumentParser(argparse.ArgumentParser):
    """The parser of every tool: a flag must be spelt in full (no abbreviation, so a typo never
    silently means another flag), and a command line that fails names its unknown flags first
    (`unrecognized arguments: --galery`), before any other error such as a missing required flag."""

    def __init__(self, *args, **kwargs):
        kwargs['allow_abbrev'] = False
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        self._argv = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(args, namespace)

    def _unknown_flags(self):
        argv = getattr(self, '_argv', [])
        argv = argv[:argv.index('--')] if '--' in argv else argv
        return [a for a in argv if isinstance(a, str) and (self._parse_optional(a) or (1,))[0] is None]

    def error(self, message):
        unknown = [] if getattr(self, '_in_error', False) else self._unknown_flags()
        self._in_error = True
        if unknown and not message.startswith('unrecognized arguments'):
            message = 'unrecognized arguments: %s' % ' '.join(unknown)
        super().error(message)


def doc_parser(doc):
    """An ArgumentParser whose description is the script docstring's first line and whose epilog is
    the rest of it (after the blank second line), kept as written."""
    lines = doc.splitlines()
    return ArgumentParser(description=lines[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                          epilog='\n'.join(lines[2:]))


def add_model_argument(parser):
    """The positional `model` of the tools that embed faces: a model folder or a frozen .pb."""
    parser.add_argument('model', type=str,
                        help='A model folder (one .meta and a checkpoint), a frozen model (.pb) file, or an '
                             'exported .tflite or .onnx file')


def add_standardization_argument(parser, what='the images'):
    """The classic `--use_fixed_image_standardization`: (x - 127.5) / 128 instead of per-image
    whitening (prewhiten), as the models were trained (the 2018 models: fixed)."""
    parser.add_argument('--use_fixed_image_standardization', action='store_true',
                        help='Standardize %s as (x - 127.5) / 128 (the 2018 models) instead of per-image '
                             'whitening (prewhiten).' % what)


def rate(text):
    """An argparse type: a rate (FAR, FPIR) strictly between 0 and 1."""
    value = _number(text, float)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError('a rate must lie between 0 and 1 (exclusive), got %g' % value)
    return value


def rate_list(text):
    """An argparse type: comma-separated rates, e.g. 1e-2,1e-3,1e-4."""
    values = [rate(x) for x in text.split(',') if x.strip()]
    if not values:
        raise argparse.ArgumentTypeError('expected comma-separated rates such as 1e-2,1e-3, got %r' % text)
    return values


def fraction(text):
    """An argparse type: a float in [0, 1]."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError('must be between 0 and 1, got %g' % value)
    return value


def memory_fraction(text):
    """An argparse type: a float in (0, 1]."""
    value = _number(text, float)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError('must be above 0 and at most 1, got %g' % value)
    return value


def add_gpu_memory_arguments(parser):
    """The classic `--gpu_memory_fraction` (share of each GPU's memory this process may take) and
    `--allow_growth` (allocate as needed instead); both go to the session config, no effect on a CPU."""
    parser.add_argument('--gpu_memory_fraction', type=memory_fraction, default=1.0,
                        help='Upper bound on the share of GPU memory used by the process (no effect on CPU).')
    parser.add_argument('--allow_growth', action='store_true',
                        help='Allocate GPU memory as needed instead of the whole fraction at start (no effect on CPU).')
