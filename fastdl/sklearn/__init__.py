"""scikit-learn estimators trained by fastdl: ``MLPClassifier`` and ``MLPRegressor`` take
scikit-learn's parameters and give its attributes, and work in ``Pipeline``,
``GridSearchCV`` and ``cross_val_score``.  See ``docs/sklearn.md``."""
from fastdl.sklearn._mlp import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
