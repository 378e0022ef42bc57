"""The scikit-learn family of methods: TF-IDF with a linear model for text; linear, random
forest, histogram gradient boosting, LightGBM and XGBoost for tables.

Each builder returns an unfitted scikit-learn estimator. Text estimators take a list of strings
(the text columns joined: `Dataset.texts`), tabular ones the feature frame. Class weights are
"balanced" unless switched off: with skewed classes an unweighted model learns to ignore the
rare ones, and on balanced data the weights are all 1 anyway.
Not covered: hyper-parameter search (the defaults here are the usual strong baselines; a search
belongs inside the folds, not on them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.class_weight import compute_sample_weight

from chatworks.lab.data import Columns

Builder = Callable[[Columns, int, bool], BaseEstimator]


def _tfidf() -> TfidfVectorizer:
    # Word uni- and bigrams with sublinear tf: the standard strong baseline for topic-like
    # classes; min_df=2 drops hapaxes, which are mostly names and typos.
    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)


def tfidf_logreg(_: Columns, seed: int, balanced: bool) -> BaseEstimator:
    clf = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced" if balanced else None)
    return make_pipeline(_tfidf(), clf)


def tfidf_chars_logreg(_: Columns, seed: int, balanced: bool) -> BaseEstimator:
    """Character 3-5-grams (within word boundaries) beside word 1-2-grams: robust to spelling
    games and rephrasings, at the cost of a larger model. The prompt-injection guard's shape."""
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2,
                            max_features=6000)  # fmt: skip
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=3000)
    clf = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced" if balanced else None)
    return Pipeline([("features", FeatureUnion([("chars", chars), ("words", words)])),
                     ("clf", clf)])  # fmt: skip


def tfidf_svm(_: Columns, seed: int, balanced: bool) -> BaseEstimator:
    # LinearSVC gives margins, not probabilities: sigmoid calibration on inner folds turns them
    # into probabilities the report's calibration plot and the API's answer can use.
    svm = LinearSVC(C=1.0, class_weight="balanced" if balanced else None, random_state=seed)
    # ensemble=False: one SVM fitted on all the rows, calibrators from inner folds (the default
    # keeps three SVMs: three times the size, twice the latency, no better here).
    calibrated = CalibratedClassifierCV(svm, method="sigmoid", cv=3, ensemble=False)
    return make_pipeline(_tfidf(), calibrated)


def _tabular(columns: Columns, scale: bool, one_hot: bool) -> ColumnTransformer:
    numeric = [SimpleImputer(strategy="median")] + ([StandardScaler()] if scale else [])
    if one_hot:
        categorical = OneHotEncoder(handle_unknown="ignore", min_frequency=2)
    else:  # trees split on codes; unseen categories become their own code
        categorical = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    return ColumnTransformer(
        [("num", make_pipeline(*numeric), columns.numeric),
         ("cat", categorical, columns.categorical)],
        sparse_threshold=0.0,
    )  # fmt: skip


def linear(columns: Columns, seed: int, balanced: bool) -> BaseEstimator:
    clf = LogisticRegression(max_iter=5000, class_weight="balanced" if balanced else None)
    return Pipeline([("prep", _tabular(columns, scale=True, one_hot=True)), ("clf", clf)])


def random_forest(columns: Columns, seed: int, balanced: bool) -> BaseEstimator:
    clf = RandomForestClassifier(
        n_estimators=300, n_jobs=1, random_state=seed,
        class_weight="balanced" if balanced else None,
    )  # fmt: skip
    return Pipeline([("prep", _tabular(columns, scale=False, one_hot=True)), ("clf", clf)])


def hist_gradient_boosting(columns: Columns, seed: int, balanced: bool) -> BaseEstimator:
    n_num = len(columns.numeric)
    cats = list(range(n_num, n_num + len(columns.categorical)))
    clf = HistGradientBoostingClassifier(
        random_state=seed, categorical_features=cats or None, early_stopping="auto",
        class_weight="balanced" if balanced else None,
    )  # fmt: skip
    return Pipeline([("prep", _tabular(columns, scale=False, one_hot=False)), ("clf", clf)])


class Weighted(BaseEstimator):
    """Passes balanced sample weights to a classifier that has no `class_weight` (XGBoost)."""

    def __init__(self, prep, clf, balanced: bool = True):
        self.prep, self.clf, self.balanced = prep, clf, balanced

    def fit(self, x, y):
        weights = compute_sample_weight("balanced", y) if self.balanced else None
        self.clf.fit(self.prep.fit_transform(x), y, sample_weight=weights)
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, x) -> np.ndarray:
        return self.clf.predict_proba(self.prep.transform(x))


def lightgbm(columns: Columns, seed: int, balanced: bool) -> BaseEstimator:
    from lightgbm import LGBMClassifier

    clf = LGBMClassifier(
        n_estimators=300, learning_rate=0.05, num_leaves=31, min_child_samples=5,
        random_state=seed, n_jobs=1, verbose=-1,
        class_weight="balanced" if balanced else None,
    )  # fmt: skip
    return Pipeline([("prep", _tabular(columns, scale=False, one_hot=False)), ("clf", clf)])


def xgboost(columns: Columns, seed: int, balanced: bool) -> BaseEstimator:
    from xgboost import XGBClassifier

    clf = XGBClassifier(
        n_estimators=300, learning_rate=0.05, max_depth=6, random_state=seed, n_jobs=1,
        tree_method="hist",
    )  # fmt: skip
    return Weighted(_tabular(columns, scale=False, one_hot=False), clf, balanced)
