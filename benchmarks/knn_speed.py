"""k-NN speed, side by side on the same vectors: scikit-learn brute force vs mlx's FAISS probes.

    python benchmarks/knn_speed.py                      # 120,000 x 768 clustered random unit vectors, 7,600 queries
    python benchmarks/knn_speed.py --store agnews.h5 --pooling mean --layer 6

Times are wall-clock seconds of fit + predict (index build included) with the same thread count for
every contender; accuracy agreement is measured against the exact FAISS predictions. On a shared
machine run it twice: other jobs on the same cores inflate whichever contender they overlap.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="embedding store (.h5); default: synthetic vectors")
    parser.add_argument("--pooling", default="mean")
    parser.add_argument("--layer", type=int, default=None, help="layer of the store (default: last)")
    parser.add_argument("--n-train", type=int, default=120_000)
    parser.add_argument("--n-test", type=int, default=7_600)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--metric", default="cosine", choices=["cosine", "l2"])
    parser.add_argument("--approximate", default="ivf", choices=["ivf", "hnsw"])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for FAISS, BLAS and scikit-learn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spread", type=float, default=1.5, help="class overlap of the synthetic vectors")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default: the probe's rule)")
    parser.add_argument("--nprobe", type=int, default=None, help="IVF lists searched per query (default: the probe's)")
    parser.add_argument("--refine", type=int, default=None, help="IVF: exact re-ranking of k x this many candidates")
    parser.add_argument("--ef-search", type=int, default=None, help="HNSW efSearch (default: the probe's)")
    parser.add_argument("--skip-sklearn", action="store_true", help="only time the FAISS probes")
    return parser.parse_args()


def load_vectors(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(N, D) train, (N,) labels, (M, D) queries, (M,) labels, and a description."""
    if args.store:
        from embeddings.store import EmbeddingStore

        with EmbeddingStore(args.store) as store:
            start = time.perf_counter()
            X, Q = store.vectors("train", args.pooling, args.layer), store.vectors("test", args.pooling, args.layer)
            seconds = time.perf_counter() - start
            y, y_q = store.labels("train"), store.labels("test")
        mb = (X.nbytes + Q.nbytes) / 1e6
        return (
            X,
            y,
            Q,
            y_q,
            f"store {args.store} {args.pooling} layer {args.layer or 'last'} (read {mb:.0f} MB in {seconds:.2f} s)",
        )
    from probes.synthetic import Mixture

    rng = np.random.default_rng(args.seed)
    # 4 classes x 16 clusters in a 48-d latent space; the overlap puts exact k-NN near 95%, so the
    # approximate index's disagreements show up in accuracy.
    mixture = Mixture.random(args.dim, 4, rng, latent_dim=48, clusters_per_class=16, spread=args.spread)
    X, y = mixture.sample(args.n_train, rng)
    Q, y_q = mixture.sample(args.n_test, rng)
    return (
        X,
        y,
        Q,
        y_q,
        f"synthetic clustered unit vectors (48-d latent mixture, spread {args.spread}, seed {args.seed})",
    )


def timed(estimator, X, y, Q) -> tuple[np.ndarray, float, float]:
    """Predictions, fit seconds (index build), predict seconds (search + vote)."""
    start = time.perf_counter()
    estimator.fit(X, y)
    fitted = time.perf_counter()
    y_pred = estimator.predict(Q)
    return y_pred, fitted - start, time.perf_counter() - fitted


def main() -> None:
    args = parse_args()
    import faiss
    from threadpoolctl import threadpool_limits

    from probes import ApproximateParams, KNNProbe
    from probes.knn import recall_at_k

    faiss.omp_set_num_threads(args.threads)
    X, y, Q, y_q, source = load_vectors(args)
    print(
        f"{source}: train {X.shape[0]:,} x {X.shape[1]}, queries {Q.shape[0]:,}; k={args.k}, {args.metric}, "
        f"{args.threads} threads, faiss {faiss.__version__}"
    )
    rows = []
    with threadpool_limits(args.threads):
        if not args.skip_sklearn:
            from sklearn.neighbors import KNeighborsClassifier

            metric = "cosine" if args.metric == "cosine" else "euclidean"
            sk = KNeighborsClassifier(n_neighbors=args.k, metric=metric, algorithm="brute", n_jobs=args.threads)
            rows.append(("scikit-learn brute force", *timed(sk, X, y, Q), None))
        exact = KNNProbe(k=args.k, metric=args.metric, index="flat")
        rows.append(("mlx FAISS flat (exact)", *timed(exact, X, y, Q), None))
        params = ApproximateParams()
        overrides = {
            "ivf_lists": args.nlist,
            "ivf_nprobe": args.nprobe,
            "ivf_refine_factor": args.refine,
            "hnsw_ef_search": args.ef_search,
        }
        params = ApproximateParams(**{**params.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
        approximate = KNNProbe(k=args.k, metric=args.metric, index=args.approximate, params=params, seed=args.seed)
        y_approx, fit_seconds, predict_seconds = timed(approximate, X, y, Q)
        recall = recall_at_k(approximate.kneighbors(Q)[1], exact.kneighbors(Q)[1], args.k)
        rows.append((f"mlx FAISS {args.approximate} (approximate)", y_approx, fit_seconds, predict_seconds, recall))
        print(f"approximate index: {params}")
    report(rows, y_q)


def report(rows, y_q: np.ndarray) -> None:
    """Speed-ups are against the first row: total = fit + predict, query = predict only (index prebuilt)."""
    base_total, base_query = rows[0][2] + rows[0][3], rows[0][3]
    exact = next(r for r in rows if "exact" in r[0])
    print(
        f"{'contender':30} {'fit s':>7} {'pred s':>7} {'total s':>8} {'x total':>8} {'x query':>8} "
        f"{'accuracy':>9} {'vs exact':>9} {'agree':>7} {'recall@k':>9}"
    )
    for name, y_pred, fit_seconds, predict_seconds, recall in rows:
        accuracy = np.mean(y_pred == y_q)
        delta = 100 * (accuracy - np.mean(exact[1] == y_q))
        total = fit_seconds + predict_seconds
        print(
            f"{name:30} {fit_seconds:7.2f} {predict_seconds:7.2f} {total:8.2f} {base_total / total:7.1f}x "
            f"{base_query / predict_seconds:7.1f}x {accuracy:9.2%} {delta:+8.2f}pt {np.mean(y_pred == exact[1]):7.2%} "
            f"{'-' if recall is None else f'{recall:.4f}':>9}"
        )


if __name__ == "__main__":
    main()
