"""Where the plan features' time goes, and two alternatives to their sparse product.

``plan_features`` builds one sparse backup matrix and runs H backups, each one CSR product,
a max and a min. This times, on one thread and on `bench latency`'s statistics: the whole
call, the matrix build, one backup's product and its max over actions, and two other ways
to do the product (SciPy's two-vector product on one copy of the edges; torch's CSR
product), so that a faster backup can be judged against the same figures. Median thread
CPU time of ``--repeats`` calls.

    python benchmarks/plan_features_profile.py --states 256 --horizon 50 --record
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.sparse import _sparsetools  # noqa: E402

from rlfm_edge.bench.report import print_and_record  # noqa: E402
from rlfm_edge.inference.timing import refresh_stats  # noqa: E402
from rlfm_edge.model import features  # noqa: E402


def cpu_us(fn, repeats: int) -> float:
    """Median thread CPU time of ``fn`` in microseconds, after 10 untimed calls."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeats):
        start = time.thread_time_ns()
        fn()
        times.append(time.thread_time_ns() - start)
    return float(np.median(times)) / 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=256)
    parser.add_argument("--actions", type=int, default=8)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    S, A, H = args.states, args.actions, args.horizon

    g = features.base_features(refresh_stats(np.random.default_rng(0), S, A), H, 8)
    tried = g.sa_x[:, 2] > 0
    r_hat = g.sa_x[:, 3].astype(np.float64)
    r_top = max(1.0, float(r_hat[tried].max()))
    r_plus = r_hat + r_top * g.sa_x[:, 5]
    M = features._backup_matrix(g, tried, r_hat, r_plus)
    x = np.zeros(2 * (S + 1))
    Q = (M @ x).reshape(2, A + 1, S)
    V = np.zeros((2, S))
    # one copy of the edges, both values as two columns (rewards would be added after)
    P = M[: M.shape[0] // 2, :S].tocsr()
    X, Y = np.zeros((S, 2)), np.zeros((P.shape[0], 2))

    def two_vector_product():
        Y[:] = 0.0
        _sparsetools.csr_matvecs(P.shape[0], S, 2, P.indptr, P.indices, P.data, X.ravel(), Y.ravel())

    M_sorted = M.sorted_indices()  # torch's CSR wants each row's columns in order
    M_torch = torch.sparse_csr_tensor(torch.from_numpy(M_sorted.indptr), torch.from_numpy(M_sorted.indices),
                                      torch.from_numpy(M_sorted.data.astype(np.float32)), size=M.shape,
                                      check_invariants=True)
    x_torch = torch.zeros(M.shape[1])

    rows = [
        ("plan_features, whole call", cpu_us(lambda: features.plan_features(g, H), args.repeats // 4)),
        ("backup matrix build", cpu_us(lambda: features._backup_matrix(g, tried, r_hat, r_plus),
                                       args.repeats // 4)),
        ("one backup: CSR product (as shipped)", cpu_us(lambda: M @ x, args.repeats)),
        ("one backup: max over actions", cpu_us(lambda: np.max(Q, axis=1, out=V), args.repeats)),
        ("one backup: SciPy two-vector product, one copy of the edges",
         cpu_us(two_vector_product, args.repeats)),
        ("one backup: torch CSR product (float32)", cpu_us(lambda: torch.mv(M_torch, x_torch),
                                                           args.repeats)),
    ]
    body = "\n".join([
        f"S = {S}, A = {A}, H = {H}, `bench latency`'s statistics ({g.edge_state.size} kept edges; "
        f"the backup matrix holds {M.nnz} entries), one thread, median thread CPU time.", "",
        "| what | median (us) |", "|---|---|",
        *(f"| {name} | {us:.1f} |" for name, us in rows), "",
        f"The shipped product: {1e3 * rows[2][1] / M.nnz:.2f} ns per matrix entry; "
        f"{H} backups of product and max: {H * (rows[2][1] + rows[3][1]) / 1e3:.2f} ms.",
    ])
    print_and_record(body, args.record, f"Plan features: where the time goes (S = {S}, H = {H})",
                     __file__, sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
