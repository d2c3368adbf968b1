"""Writing an ROC curve: the points as CSV, and a PNG plot (matplotlib if installed, else Pillow)."""
import os

import numpy as np
from PIL import Image, ImageDraw

from facenet_tf.errors import FaceNetError

PLOT_SIZE = 480
MARGIN = 60


def write_csv(path, thresholds, fpr, tpr):
    """One line per threshold: threshold,fpr,tpr (with a header line)."""
    rows = np.column_stack([thresholds, fpr, tpr])
    np.savetxt(path, rows, fmt='%.6f', delimiter=',', header='threshold,fpr,tpr', comments='')


def _plot_matplotlib(path, fpr, tpr, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(6, 6))
    plt.plot(fpr, tpr, lw=2)
    plt.plot([0, 1], [0, 1], ':', color='gray')
    plt.xlim(0, 1)
    plt.ylim(0, 1)
    plt.xlabel('False positive rate')
    plt.ylabel('True positive rate')
    plt.title(title)
    plt.grid(True, alpha=0.3)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_pillow(path, fpr, tpr, title):
    size = PLOT_SIZE + 2 * MARGIN
    img = Image.new('RGB', (size, size), 'white')
    draw = ImageDraw.Draw(img)

    def xy(x, y):
        return MARGIN + x * PLOT_SIZE, MARGIN + (1 - y) * PLOT_SIZE

    for t in np.linspace(0, 1, 6):
        draw.line([xy(t, 0), xy(t, 1)], fill=(225, 225, 225))
        draw.line([xy(0, t), xy(1, t)], fill=(225, 225, 225))
        draw.text((xy(t, 0)[0] - 8, xy(t, 0)[1] + 6), '%.1f' % t, fill='black')
        draw.text((MARGIN - 30, xy(0, t)[1] - 6), '%.1f' % t, fill='black')
    draw.rectangle([xy(0, 1), xy(1, 0)], outline='black')
    draw.line([xy(0, 0), xy(1, 1)], fill=(160, 160, 160))
    draw.line([xy(x, y) for x, y in zip(fpr, tpr)], fill=(31, 119, 180), width=3)
    draw.text((MARGIN, MARGIN - 30), title, fill='black')
    draw.text((MARGIN + PLOT_SIZE // 2 - 50, size - MARGIN + 25), 'False positive rate', fill='black')
    draw.text((6, MARGIN - 20), 'True positive rate', fill='black')
    img.save(path)


def write_roc(path, thresholds, fpr, tpr, title='ROC'):
    """Write the points as CSV and the plot as PNG, named after `path` (extension replaced by .csv
    and .png when it is .png, else the CSV is `path` itself); returns (csv_path, png_path)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FaceNetError('folder of --roc_output does not exist: %s' % directory)
    root, ext = os.path.splitext(path)
    csv_path = root + '.csv' if ext.lower() == '.png' else path
    png = root + '.png'
    write_csv(csv_path, thresholds, fpr, tpr)
    order = np.argsort(fpr, kind='mergesort')
    fpr, tpr = np.asarray(fpr)[order], np.asarray(tpr)[order]
    try:
        _plot_matplotlib(png, fpr, tpr, title)
    except ImportError:
        _plot_pillow(png, fpr, tpr, title)
    return csv_path, png
