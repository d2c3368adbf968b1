"""Five-point face alignment: a least-squares similarity transform onto a fixed template.

The template is the 112x112 five-point layout (eyes, nose tip, mouth corners) used by ArcFace-style
recognisers; for other output sizes it is scaled by size / 112.
"""
import cv2
import numpy as np

TEMPLATE_SIZE = 112
TEMPLATE_112 = np.array([[38.2946, 51.6963],
                         [73.5318, 51.5014],
                         [56.0252, 71.7366],
                         [41.5493, 92.3655],
                         [70.7299, 92.2041]], dtype=np.float64)


def template(image_size):
    """The five template points for an image_size x image_size output."""
    return TEMPLATE_112 * (float(image_size) / TEMPLATE_SIZE)


def similarity_transform(src, dst):
    """2x3 matrix of the rotation + uniform scale + translation taking src points closest to dst.

    Closed-form least squares (Umeyama): SVD of the cross-covariance, reflection excluded.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = (src_c ** 2).sum() / src.shape[0]
    cov = dst_c.T @ src_c / src.shape[0]
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_dst - scale * rot @ mu_src
    return matrix


def face_points(points, index):
    """Landmarks of face `index` as [5, 2] (x, y) from the detector's [10, N] layout."""
    return np.stack([points[0:5, index], points[5:10, index]], axis=1)


def align_to_template(img, landmarks, image_size):
    """Warp `img` so its five landmarks [5, 2] land on the template; image_size x image_size uint8."""
    matrix = similarity_transform(landmarks, template(image_size))
    return cv2.warpAffine(img, matrix, (image_size, image_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
