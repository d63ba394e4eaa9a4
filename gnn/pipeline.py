"""The steps the CLI and the API run: train and save, evaluate, score, list models.
Each takes the store and the models directory; nothing here reads settings."""

from __future__ import annotations

import importlib
import json
import threading
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from gnn import registry
from gnn.errors import GnnError, NotEnoughLabelsError
from gnn.tensors import export_graph
from graph.store import GraphStore

warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")


def train_users(store: GraphStore, models_dir: Path, split: str = "random", seed: int = 0,
                **overrides: Any) -> tuple[str, dict[str, Any]]:
    from gnn.train import TrainConfig, train_user_model

    cfg = TrainConfig(seed=seed, split=split, **overrides)
    started = time.perf_counter()
    full = export_graph(store, max_item_users=cfg.max_item_users)
    export_s = time.perf_counter() - started
    model = train_user_model(
        full, cfg,
        export_as_of=lambda cut: export_graph(store, as_of_ms=cut,
                                              max_item_users=cfg.max_item_users),
    )
    model.metrics["training"]["export_seconds"] = round(export_s, 2)
    model.metrics["training"]["total_seconds"] = round(time.perf_counter() - started, 2)
    version = registry.save(model, models_dir, registry.fingerprint(full))
    return version, {k: v for k, v in model.metrics.items() if k != "baseline_test_scores"}


def train_transactions(store: GraphStore, models_dir: Path, split: str = "random",
                       seed: int = 0) -> tuple[str, dict[str, Any]]:
    """The transaction task on the store's payments (PAID.is_fraud labels)."""
    from gnn import sffsd

    table = transactions_from_store(store)
    if split == "time":
        train, test = sffsd.time_split(table.time, 0.3)
    else:
        train, test = sffsd.published_split(table.labels, 0.3, random_state=seed)
    metrics = sffsd.evaluate_protocol(table, train, test, by_time=split == "time", seed=seed)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    version = f"txn-{stamp}"
    d = Path(models_dir) / version
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.json").write_text(json.dumps({
        "task": "transaction", "version": version, "created": stamp,
        "config": {"seed": seed, "split": split},
    }, indent=2))
    (d / "metrics.json").write_text(json.dumps({"model": metrics}, indent=2))
    return version, {"model": metrics}


def transactions_from_store(store: GraphStore) -> Any:
    from gnn.sffsd import TransactionTable

    props = ["amount", "ts", "location", "txn_type", "channel", "is_fraud"]
    chunks = list(store.export_relationships("PAID", props))
    if not chunks:
        raise NotEnoughLabelsError("the store holds no payments (PAID); load data first")
    col = {k: np.concatenate([c[k] for c in chunks]) for k in ["src", "dst", *props]}
    order = np.argsort(np.nan_to_num(col["ts"], nan=0), kind="stable")
    col = {k: v[order] for k, v in col.items()}

    def codes(v: np.ndarray) -> np.ndarray:
        return np.unique(np.array([str(x) for x in v.tolist()]), return_inverse=True)[1]

    y = col["is_fraud"]
    labels = np.where(np.isin(y, (0.0, 1.0)), np.nan_to_num(y), 2).astype(np.int64)
    if (labels != 2).sum() == 0:
        raise NotEnoughLabelsError("no payment carries is_fraud; the transaction task needs it")
    return TransactionTable(
        time=np.arange(len(order), dtype=np.int64),
        codes={"Source": codes(col["src"]), "Target": codes(col["dst"]),
               "Location": codes(col["location"]), "Type": codes(col["txn_type"])},
        amount=np.nan_to_num(col["amount"]),
        labels=labels,
    )


def evaluate(store: GraphStore, models_dir: Path, version: str | None = None,
             plots_dir: Path | None = None) -> dict[str, Any]:
    """Re-score the model's test users from the store (training users' labels visible,
    as when it was trained), report its metrics beside the baselines of its training
    run, and draw ROC, precision-recall and histogram PNGs."""
    from gnn.plots import write_plots
    from gnn.train import compare, evaluation_scores

    name, model = registry.load(models_dir, version)
    g = export_graph(store, max_item_users=model.config.max_item_users)
    index = g.index_of()
    test = np.array([index[u] for u in model.split.get("test", []) if u in index], np.int64)
    if len(test) == 0:
        raise GnnError(f"none of model {name}'s test users are in the store; "
                       "evaluate against the data it was trained on")
    y = g.labels()[test].astype(int)
    probs = evaluation_scores(model, g, test)
    result: dict[str, Any] = {"version": name, **compare(model, g, test, probs)}
    for k in ("tuning", "selection"):
        if k in model.metrics:
            result[k] = model.metrics[k]
    out_dir = plots_dir or (registry.resolve(models_dir, name) / "plots")
    result["plots"] = [str(p) for p in write_plots(
        y, {"fraud_risk": probs["fraud"], "relational_risk": probs["relational"],
            "own_risk": probs["own"]}, Path(out_dir))]
    return result


def score_all(store: GraphStore, models_dir: Path, version: str | None = None
              ) -> dict[str, Any]:
    from gnn.score import score_and_write

    started = time.perf_counter()
    # torch_geometric takes ~2 s to import, and only the model's input needs it: import
    # it meanwhile, while the export mostly waits on its readers.
    warm = threading.Thread(target=importlib.import_module, args=("torch_geometric.data",),
                            name="import-torch-geometric", daemon=True)
    warm.start()
    name, model = registry.load(models_dir, version)
    g = export_graph(store, max_item_users=model.config.max_item_users)
    warm.join()
    exported = time.perf_counter()
    scores, n, seconds = score_and_write(store, model, g, name)
    return {
        "version": name, "users": g.n_users, "written": n,
        "export_seconds": round(exported - started, 2),
        # the model's input, then the model and the writes side by side
        "prepare_seconds": round(seconds["prepare_seconds"], 2),
        "predict_seconds": round(seconds["predict_seconds"], 2),
        "write_wait_seconds": round(seconds["write_wait_seconds"], 2),
        "score_seconds": round(time.perf_counter() - exported, 2),
        "mean": {k: float(np.mean(v)) for k, v in scores.items()},
    }


def score_one(store: GraphStore, models_dir: Path, user_id: str,
              version: str | None = None, explain: bool = False) -> dict[str, Any]:
    from gnn.score import score_user

    name, model = registry.load(models_dir, version)
    if explain:
        from gnn.explain import explain_user

        out = explain_user(model, store, user_id)
        out["contributions"] = [asdict(c) for c in out["contributions"]]
        return {"version": name, **out}
    return {"version": name, "user": user_id, "scores": score_user(model, store, user_id)}


def models(models_dir: Path) -> list[dict[str, Any]]:
    return [
        {"version": m.version, "task": m.task, "path": str(m.path), "created": m.created,
         "seed": m.seed,
         "model": m.metrics.get("model", {}), "fingerprint": m.fingerprint.get("sha256", "")}
        for m in registry.list_models(models_dir)
    ]
