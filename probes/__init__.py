"""Probes: vectors from an embedding store -> test scores.

Probes are scikit-learn style estimators (``KNNProbe``, ``LogRegProbe``); ``run_probes`` is the one
loop that evaluates them over every pooled matrix of a store and saves a run folder.
"""

from probes.evaluate import (ClassMetrics, KNNConfig, LogRegConfig, ProbeKind, ProbeReport, ProbeResult,
                             ProbeRunConfig, run_probes)
from probes.knn import ApproximateParams, IndexKind, KNNProbe, Metric, Weights
from probes.logreg import LogRegProbe, select_C

__all__ = ["ApproximateParams", "ClassMetrics", "IndexKind", "KNNConfig", "KNNProbe", "LogRegConfig", "LogRegProbe",
           "Metric", "ProbeKind", "ProbeReport", "ProbeResult", "ProbeRunConfig", "Weights", "run_probes", "select_C"]
