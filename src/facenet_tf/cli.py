"""Running a script's main: bad input becomes one clear line on stderr, never a traceback."""
import os
import sys


class UserError(Exception):
    """An error caused by the user's input (paths, flags, files); printed as one line."""


def run(main, args, prog=None):
    """Call main(args); turn UserError / KeyboardInterrupt into an exit code with a one-line message."""
    prog = prog or os.path.basename(sys.argv[0])
    try:
        code = main(args)
    except UserError as e:
        sys.stderr.write('%s: error: %s\n' % (prog, e))
        return 2
    except KeyboardInterrupt:
        sys.stderr.write('%s: interrupted\n' % prog)
        return 130
    return 0 if code is None else int(code)
