"""Probes: vectors from an embedding store -> test scores.

Probes are scikit-learn style estimators (``KNNProbe``, ``LogRegProbe``); ``run_probes`` is the one
loop that evaluates them over every pooled matrix of a store and saves a run folder.
"""

import importlib

# Imported on first use (PEP 562): the CLI reads the option enums from probes.knn at start-up
# without paying for scikit-learn and FAISS.
_HOMES = {
    **dict.fromkeys(("KNNConfig", "LogRegConfig", "ProbeKind", "ProbeRunConfig"), "probes.config"),
    **dict.fromkeys(("ProbeReport", "run_probes"), "probes.evaluate"),
    "ProbeResult": "probes.record",
    "ClassMetrics": "common.metrics",
    **dict.fromkeys(("ApproximateParams", "KNNProbe"), "probes.knn"),
    **dict.fromkeys(("IndexKind", "Metric", "Weights"), "probes.choices"),
    **dict.fromkeys(("LogRegProbe", "select_C"), "probes.logreg"),
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'probes' has no attribute {name!r}")


__all__ = [
    "ApproximateParams",
    "ClassMetrics",
    "IndexKind",
    "KNNConfig",
    "KNNProbe",
    "LogRegConfig",
    "LogRegProbe",
    "Metric",
    "ProbeKind",
    "ProbeReport",
    "ProbeResult",
    "ProbeRunConfig",
    "Weights",
    "run_probes",
    "select_C",
]
