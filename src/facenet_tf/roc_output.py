"""Writing an ROC curve: the points as CSV, and a matplotlib PNG plot read as face-verification
curves are: false-accept rate on a log axis, the VAL@FAR point and the equal error rate marked."""
import os

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.files import atomic_path

FIGURE_INCHES = 6.0
DPI = 80               # 6 in x 80 dpi: a 480 x 480 pixel PNG
MIN_FAR = 1e-4         # left end of the log axis when no point lies further left


def write_csv(path, thresholds, fpr, tpr):
    """One line per threshold: threshold,fpr,tpr (with a header line)."""
    rows = np.column_stack([thresholds, fpr, tpr])
    with atomic_path(path) as tmp:
        np.savetxt(tmp, rows, fmt='%.6f', delimiter=',', header='threshold,fpr,tpr', comments='')


def far_floor(fpr, far=None):
    """Left end of the log false-accept axis: a decade below the smallest positive rate shown (a rate
    of 0 cannot be drawn on a log axis and is drawn there), at most MIN_FAR."""
    rates = np.concatenate([np.ravel(fpr), [] if far is None else [far]]).astype(np.float64)
    positive = rates[rates > 0]
    smallest = positive.min() if positive.size else MIN_FAR
    return 10.0 ** np.floor(np.log10(min(smallest, MIN_FAR)))


def plot_roc(fpr, tpr, title='ROC', val=None, far=None, eer=None):
    """The ROC figure (a matplotlib Figure, not shown): true-accept rate over the false-accept rate
    on a log axis, the VAL@FAR point and the EER point (where FAR = 1 - TAR) marked when given."""
    from matplotlib.figure import Figure   # a Figure without pyplot: no display, no global state
    floor = far_floor(fpr, far)
    fig = Figure(figsize=(FIGURE_INCHES, FIGURE_INCHES), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(np.maximum(fpr, floor), tpr, lw=2, label='ROC')
    if val is not None and far is not None and np.isfinite(val) and np.isfinite(far):
        ax.plot([max(far, floor)], [val], 'o', color='tab:red', label='VAL %.4f @ FAR %.5f' % (val, far))
    if eer is not None and np.isfinite(eer):
        ax.plot([max(eer, floor)], [1.0 - eer], 's', color='tab:green', label='EER %.4f' % eer)
    ax.set_xscale('log')
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel('False accept rate (log scale)')
    ax.set_ylabel('True accept rate')
    ax.set_title(title, fontsize=10)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(loc='lower right')
    fig.tight_layout()
    return fig


def write_roc(path, thresholds, fpr, tpr, title='ROC', val=None, far=None, eer=None):
    """Write the points as CSV and the plot as PNG, named after `path` (extension replaced by .csv
    and .png when it is .png, else the CSV is `path` itself), each written atomically; val/far (the
    VAL@FAR point) and eer are marked on the plot when given; returns (csv_path, png_path)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FaceNetError('folder of --roc_output does not exist: %s' % directory)
    root, ext = os.path.splitext(path)
    csv_path = root + '.csv' if ext.lower() == '.png' else path
    png = root + '.png'
    write_csv(csv_path, thresholds, fpr, tpr)
    order = np.argsort(fpr, kind='mergesort')
    fpr, tpr = np.asarray(fpr)[order], np.asarray(tpr)[order]
    with atomic_path(png) as tmp:
        plot_roc(fpr, tpr, title, val, far, eer).savefig(tmp, dpi=DPI, format='png')
    return csv_path, png
