"""Versioned model directories: ``<models_dir>/<version>/`` holds

* ``weights.pt``: the network's state dict;
* ``model.json``: architecture, calibration, training config (with the seed) and the
  feature spec (names, scaling statistics, reference time, payment channels);
* ``fingerprint.json``: what data the model was trained on;
* ``metrics.json``: test metrics of the model and of the baselines from the same run;
* ``split.json``: the user ids of the fit, validation and test sets.

A version is ``user-<UTC time>-<fingerprint prefix>``; "latest" is the newest.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnn.boost import OwnTreeScorer
from gnn.errors import ModelNotFoundError
from gnn.features import FeatureSpec
from gnn.models import RelationalRiskGNN
from gnn.tensors import GraphArrays
from gnn.train import TrainConfig, UserModel


def fingerprint(g: GraphArrays) -> dict[str, Any]:
    """Counts and a hash of the users, labels and links the model saw."""
    h = hashlib.sha256()
    h.update("\n".join(g.user_ids.tolist()).encode())
    h.update(np.nan_to_num(g.labels(), nan=-1).astype(np.int8).tobytes())
    for rt in sorted(g.item_edges):
        u, i = g.item_edges[rt]
        h.update(rt.encode() + u.tobytes() + i.tobytes())
    for rt in sorted(g.direct_edges):
        a, b = g.direct_edges[rt]
        h.update(rt.encode() + a.tobytes() + b.tobytes())
    h.update(str(len(g.paid_user)).encode())
    return {
        "sha256": h.hexdigest(),
        "users": g.n_users,
        "labelled": int(np.isfinite(g.labels()).sum()),
        "payments": int(len(g.paid_user)),
        "item_links": {rt: int(len(u)) for rt, (u, _) in g.item_edges.items()},
        "direct_links": {rt: int(len(a)) // 2 for rt, (a, _) in g.direct_edges.items()},
    }


@dataclass(frozen=True)
class ModelInfo:
    version: str
    path: Path
    created: str
    seed: int | None
    task: str
    metrics: dict[str, Any]
    fingerprint: dict[str, Any]


def save(model: UserModel, models_dir: Path, fp: dict[str, Any]) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    version = f"user-{stamp}-{fp['sha256'][:8]}"
    d = Path(models_dir) / version
    n = 1
    while d.exists():
        n += 1
        d = Path(models_dir) / f"{version}.{n}"
    version = d.name
    d.mkdir(parents=True)
    torch.save(model.net.state_dict(), d / "weights.pt")
    if model.tree is not None:
        model.tree.save(d / "own_trees")
    if model.graph_tree is not None:
        model.graph_tree.save(d / "graph_trees")
    meta = model.describe() | {"version": version, "created": stamp}
    (d / "model.json").write_text(json.dumps(meta, indent=2))
    (d / "fingerprint.json").write_text(json.dumps(fp, indent=2))
    (d / "metrics.json").write_text(json.dumps(model.metrics, indent=2, default=str))
    (d / "split.json").write_text(json.dumps(model.split))
    return version


def list_models(models_dir: Path) -> list[ModelInfo]:
    out = []
    root = Path(models_dir)
    if not root.is_dir():
        return []
    for d in sorted(root.iterdir()):
        meta_file = d / "model.json"
        if not meta_file.is_file():
            continue
        meta = json.loads(meta_file.read_text())
        metrics = _read(d / "metrics.json")
        out.append(ModelInfo(d.name, d, meta.get("created", ""), meta["config"].get("seed"),
                             meta.get("task", "user"), metrics, _read(d / "fingerprint.json")))
    return out


def _read(p: Path) -> dict[str, Any]:
    return json.loads(p.read_text()) if p.is_file() else {}


def resolve(models_dir: Path, version: str | None = None) -> Path:
    models = [m for m in list_models(models_dir) if m.task == "user"]
    if not models:
        raise ModelNotFoundError(
            f"no trained model under {models_dir}; run `riskgraph train` first"
        )
    if version in (None, "latest"):
        return max(models, key=lambda m: (m.created, m.version)).path
    for m in models:
        if m.version == version:
            return m.path
    raise ModelNotFoundError(
        f"no model {version!r} under {models_dir}; `riskgraph models` lists them"
    )


def load(models_dir: Path, version: str | None = None) -> tuple[str, UserModel]:
    d = resolve(models_dir, version)
    meta = json.loads((d / "model.json").read_text())
    net = RelationalRiskGNN(meta["in_channels"], meta["item_rels"], meta["direct_rels"],
                            meta["hidden"], meta["dropout"], meta.get("stack_channels", 0),
                            meta.get("fraud_from_stack", False))
    net.load_state_dict(torch.load(d / "weights.pt", weights_only=True))
    net.eval()
    model = UserModel(
        net,
        FeatureSpec.from_dict(meta["spec"]),
        {k: (float(v[0]), float(v[1])) for k, v in meta["calibration"].items()},
        TrainConfig(**meta["config"]),
        OwnTreeScorer.load(d / "own_trees") if (d / "own_trees").is_dir() else None,
        _read(d / "metrics.json"),
        _read(d / "split.json"),
        OwnTreeScorer.load(d / "graph_trees") if (d / "graph_trees").is_dir() else None,
    )
    return d.name, model
