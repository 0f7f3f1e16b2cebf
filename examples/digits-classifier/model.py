"""The classifier for the digits target: the one file agents edit.

`build()` returns an unfitted scikit-learn estimator; evaluate.py (fixed) scores it by 5-fold
cross-validated accuracy on scikit-learn's bundled 8x8 digits. The top-level UPPER_CASE
constants are the knobs the sweep agent moves: floats are scaled (x1.19 to x4 a step), *_FRAC
values are shifted within [0, 1].
"""

from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

PCA_VARIANCE_FRAC = 0.5  # share of the pixel variance PCA keeps; 1.0 keeps every component
SVM_C = 0.1  # inverse regularisation strength of the SVM
RBF_GAMMA = 0.0001  # width of the RBF kernel, on raw pixel values (0..16)


def components() -> float | None:
    """PCA's n_components for PCA_VARIANCE_FRAC, valid at both ends of [0, 1]: None (every
    component) from 1 up, and at least 1% of the variance, since PCA rejects a share of 0."""
    if PCA_VARIANCE_FRAC >= 1:
        return None
    return max(PCA_VARIANCE_FRAC, 0.01)


def build() -> BaseEstimator:
    """The unfitted estimator that evaluate.py cross-validates."""
    return make_pipeline(PCA(n_components=components(), svd_solver="full"),
                         SVC(C=SVM_C, gamma=RBF_GAMMA))
