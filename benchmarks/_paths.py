"""Import paths of the benchmarks: `from _paths import ROOT, SHARED` (first, before the project's
modules) puts src/ on sys.path, as it is for the scripts run as `python src/<script>.py`.
The benchmarks' one sys.path edit (docs/architecture.md, "Import paths")."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'src')
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')

if SRC not in sys.path:
    sys.path.insert(0, SRC)
