"""`alex demo`: a real, small training sweep, tracked end to end.

Logistic regression by mini-batch gradient descent (numpy) on a synthetic,
seeded classification problem, for several learning rates. The parent
process starts a sweep run and, nested under it, one run per learning rate
with its parameters and datasets; a pool of worker processes attaches to
those runs by id and logs loss, accuracy and gradient norm at every step,
plus the learned weights as an artifact. Code and environment are captured
for every run. Then the projection is brought up to date and summarised with
SQL. `run_demo` returns what it did; the `alex demo` command prints it.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import start_run
from .query import Reader
from .store import Store

EXPERIMENT = "demo-logreg"
LEARNING_RATES = (0.01, 0.05, 0.2, 1.0)
SUMMARY_SQL = f"""SELECT p.value AS lr, r.status, COUNT(m.id) AS points,
       MIN(CASE WHEN m.key = 'train/loss' THEN m.value END) AS best_loss,
       MAX(CASE WHEN m.key = 'val/accuracy' THEN m.value END) AS best_val_acc
FROM run r
JOIN parameter p ON p.run_id = r.id AND p.key = 'lr'
JOIN metric m ON m.run_id = r.id
WHERE r.experiment_name = '{EXPERIMENT}'
GROUP BY r.id ORDER BY r.timestamp_start DESC, CAST(p.value AS REAL) LIMIT {len(LEARNING_RATES)}"""
#: What each run logs to look at: key -> kind (the dashboard's run page shows them).
MEDIA = {"weights": "image", "weights/histogram": "histogram", "val/roc": "figure", "val/per_class": "table"}
#: How many times during training the weights are logged as an image and a histogram.
MEDIA_STEPS = 4


def make_data(seed: int = 7, n: int = 4000, d: int = 20) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w_true = rng.normal(size=d)
    y = (x @ w_true + rng.normal(scale=1.0, size=n) > 0).astype(float)
    split = int(n * 0.8)
    return x[:split], y[:split], x[split:], y[split:]


def _loss_acc(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    eps = 1e-12
    loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    return loss, float(np.mean((p > 0.5) == y))


def _weights_image(w: np.ndarray) -> np.ndarray:
    """The weights as a small grey image (one pixel each, 0 at mid-grey), scaled up 8x so it is visible."""
    side = int(np.ceil(np.sqrt(w.size)))
    grid = np.zeros(side * side)
    grid[: w.size] = w
    scale = max(float(np.abs(grid).max()), 1e-12)
    img = (grid.reshape(side, side) / scale + 1.0) / 2.0
    return np.kron(img, np.ones((8, 8)))


def _log_final_media(run: Any, w: np.ndarray, xv: np.ndarray, yv: np.ndarray, step: int) -> None:
    """The validation ROC curve (a plotly figure) and per-class precision / recall (a table)."""
    import plotly.graph_objects as go

    p = 1.0 / (1.0 + np.exp(-(xv @ w)))
    order = np.argsort(-p)
    hits = yv[order]
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(hits.sum(), 1.0)])
    fpr = np.concatenate([[0.0], np.cumsum(1 - hits) / max((1 - hits).sum(), 1.0)])
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    fig = go.Figure(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"ROC (AUC {auc:.3f})"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot"}, name="chance"))
    fig.update_layout(xaxis_title="false positive rate", yaxis_title="true positive rate")
    run.log_figure("val/roc", fig, step=step)
    pred = p > 0.5
    rows = []
    for cls in (0, 1):
        truth, said = yv == cls, pred == cls
        tp = int(np.sum(truth & said))
        rows.append(
            {
                "class": cls,
                "support": int(truth.sum()),
                "precision": tp / max(int(said.sum()), 1),
                "recall": tp / max(int(truth.sum()), 1),
            }
        )
    run.log_table("val/per_class", rows, step=step)


def train(job: tuple[str, str, float, int, int]) -> dict[str, Any]:
    """One worker's job: attach to an existing run and train, logging every step."""
    store, run_id, lr, steps, batch = job
    x, y, xv, yv = make_data()
    rng = np.random.default_rng(int(lr * 1000))
    w = np.zeros(x.shape[1])
    media_at = set(np.linspace(0, steps - 1, MEDIA_STEPS).astype(int).tolist())
    with start_run(run_id=run_id, store=store) as run:
        for step in range(steps):
            idx = rng.integers(0, len(x), size=batch)
            xb, yb = x[idx], y[idx]
            p = 1.0 / (1.0 + np.exp(-(xb @ w)))
            grad = xb.T @ (p - yb) / batch
            w -= lr * grad
            loss = float(-np.mean(yb * np.log(p + 1e-12) + (1 - yb) * np.log(1 - p + 1e-12)))
            run.log_metrics({"train/loss": loss, "train/grad_norm": float(np.linalg.norm(grad))}, step=step)
            if step % 50 == 0 or step == steps - 1:
                val_loss, val_acc = _loss_acc(w, xv, yv)
                run.log_metrics({"val/loss": val_loss, "val/accuracy": val_acc}, step=step)
            if step in media_at:
                run.log_image("weights", _weights_image(w), step=step, caption=f"weights after {step + 1} steps")
                run.log_histogram("weights/histogram", w, step=step, bins=16)
        _log_final_media(run, w, xv, yv, steps - 1)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "weights.npy"
            np.save(path, w, allow_pickle=False)
            run.log_artifact(path, type="model")
    return {"run_id": run_id, "lr": lr, "val_accuracy": _loss_acc(w, xv, yv)[1]}


@dataclass(frozen=True)
class DemoResult:
    """What a demo sweep did: its runs, how long they took, and `SUMMARY_SQL`'s answer about them."""

    run_ids: list[str]  # one per learning rate, in LEARNING_RATES' order
    seconds: float  # from the first run's start to the last one's end
    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_demo(store: Store, *, steps: int = 3000, workers: int = 2) -> DemoResult:
    """Run the sweep in `workers` processes, fold it, and query its summary."""
    started = time.perf_counter()
    pool = multiprocessing.get_context("spawn").Pool(workers)  # before any run is active: workers start clean
    runs = []
    sweep = start_run(experiment=EXPERIMENT, store=store, tags={"source": "alex demo", "kind": "sweep"})
    x, y, xv, yv = make_data()
    try:
        for lr in LEARNING_RATES:
            run = start_run(experiment=EXPERIMENT, store=store, tags={"source": "alex demo"}, parent=sweep)
            run.log_params({"lr": lr, "batch_size": 64, "steps": steps, "model": "logistic-regression"})
            run.log_dataset(np.column_stack([x, y]), name="synthetic-train", role="train")
            run.log_dataset(np.column_stack([xv, yv]), name="synthetic-val", role="eval")
            run.flush()
            runs.append(run)
        jobs = [(str(store.root), r.id, lr, steps, 64) for r, lr in zip(runs, LEARNING_RATES, strict=True)]
        results = pool.map(train, jobs)
        for run, result in zip(runs, results, strict=True):
            run.set_tag("val_accuracy", f"{result['val_accuracy']:.4f}")
            run.end()
        sweep.end()
    except BaseException:
        for run in [*runs, sweep]:
            run.end("failed", error="demo interrupted")
        raise
    finally:
        pool.close()
        pool.join()
    logged = time.perf_counter() - started
    with Reader(store) as reader:
        columns, rows = reader.sql(SUMMARY_SQL)
    return DemoResult([r.id for r in runs], logged, columns, rows)
