"""A graph model for S-FFSD: transactions are nodes, joined to the few latest *earlier*
transactions of the same source account, merchant, location and type (one relation per
key, as GTAN and RGTAN link transactions through shared entities).

Messages flow only from earlier to later transactions, so a transaction's score uses
nothing that happened after it; its inputs are the transaction features of
:mod:`gnn.sffsd` (with or without the label-derived ones), so labels reach it under the
same rule as the trees. Trained full-batch on CPU with PyTorch Geometric (one
``SAGEConv`` per relation, mean aggregation over a sparse adjacency).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn import SAGEConv

from gnn.sffsd import ModelRun, SplitData, TransactionTable
from gnn.temporal import GroupIndex

RELATIONS: tuple[str, ...] = ("Source", "Target", "Location", "Type")


@dataclass(frozen=True)
class GnnConfig:
    hidden: int = 48
    layers: int = 2
    neighbours: int = 4  # latest earlier transactions linked per relation
    dropout: float = 0.2
    lr: float = 0.005
    weight_decay: float = 1e-5
    epochs: int = 150
    patience: int = 15
    embed: int = 8  # embedding size of the merchant, location and type codes
    threads: int = 1


def earlier_edges(keys: np.ndarray, times: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) pairs joining each row (target) to the ``k`` latest rows with the
    same key and a strictly earlier time (sources)."""
    g = GroupIndex.build(keys, times)
    rows = np.arange(len(keys))
    src, dst = [], []
    for d in range(1, k + 1):
        pos = g.end - d
        ok = pos >= g.start
        src.append(g.order[pos[ok]])
        dst.append(rows[ok])
    return np.concatenate(src), np.concatenate(dst)


def adjacency(src: np.ndarray, dst: np.ndarray, n: int) -> Tensor:
    """Sparse (target x source) adjacency, in the layout SAGEConv aggregates over."""
    order = np.lexsort((src, dst))
    s, d = src[order], dst[order]
    crow = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(d, minlength=n), out=crow[1:])
    return torch.sparse_csr_tensor(
        torch.from_numpy(crow), torch.from_numpy(s.astype(np.int64)),
        torch.ones(len(s)), size=(n, n),
    )


class TransactionGNN(nn.Module):
    """Input encoder, ``layers`` rounds of per-relation mean aggregation over earlier
    transactions (residual, layer-normalised), and a linear head on the last state and
    the input encoding."""

    def __init__(self, in_dim: int, cardinalities: list[int], relations: int,
                 cfg: GnnConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.ModuleList(nn.Embedding(c, cfg.embed) for c in cardinalities)
        width = in_dim + cfg.embed * len(cardinalities)
        self.encode = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(),
                                    nn.Dropout(cfg.dropout))
        self.relations = relations
        self.convs = nn.ModuleList(
            nn.ModuleList(SAGEConv(cfg.hidden, cfg.hidden, aggr="mean") for _ in range(relations))
            for _ in range(cfg.layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.hidden) for _ in range(cfg.layers))
        self.head = nn.Linear(2 * cfg.hidden, 1)

    def embed(self, x: Tensor, cats: Tensor, adjs: list[Tensor]) -> Tensor:
        parts = [x] + [e(cats[:, i]) for i, e in enumerate(self.embeddings)]
        h0 = self.encode(torch.cat(parts, dim=1))
        h = h0
        for convs, norm in zip(self.convs, self.norms):
            layer = cast(nn.ModuleList, convs)
            m = torch.stack([conv(h, adj) for conv, adj in zip(layer, adjs)]).sum(dim=0)
            h = norm(h + nn.functional.dropout(torch.relu(m), self.cfg.dropout, self.training))
        return torch.cat([h, h0], dim=1)

    def forward(self, x: Tensor, cats: Tensor, adjs: list[Tensor]) -> Tensor:
        logit: Tensor = self.head(self.embed(x, cats, adjs)).squeeze(-1)
        return logit

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(hidden={self.cfg.hidden}, layers={self.cfg.layers}, "
                f"relations={self.relations}, neighbours={self.cfg.neighbours})")


def scaled_inputs(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Signed log, then centred and scaled on ``rows`` (training rows); missing is 0."""
    z = np.sign(x) * np.log1p(np.abs(x))
    mu = np.nanmean(z[rows], axis=0)
    sd = np.nanstd(z[rows], axis=0)
    z = (z - mu) / np.where(sd > 0, sd, 1.0)
    scaled: np.ndarray = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    return scaled


def _ap(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p))


def run_gnn(table: TransactionTable, split: SplitData, label_free: bool, seed: int = 0,
            cfg: GnnConfig | None = None) -> ModelRun:
    """Fit on the split's fitting rows, stop on its validation rows' AP, score the test
    rows. Graph and inputs cover every row (labelled or not), as in GTAN/RGTAN."""
    cfg = cfg or GnnConfig()
    started = _time.perf_counter()
    torch.manual_seed(seed)
    torch.set_num_threads(cfg.threads)
    feats = split.features.label_free() if label_free else split.features
    numeric = [i for i in range(len(feats.names)) if i not in set(feats.categorical)]
    x = torch.from_numpy(scaled_inputs(feats.x[:, numeric].astype(np.float64), split.train))
    cats_np = feats.x[:, feats.categorical].astype(np.int64)
    cats = torch.from_numpy(cats_np)
    n = len(table)
    adjs = [adjacency(*earlier_edges(table.codes[r], table.time, cfg.neighbours), n)
            for r in RELATIONS]
    net = TransactionGNN(x.shape[1], [int(c) + 1 for c in cats_np.max(axis=0)],
                         len(adjs), cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    fit = torch.from_numpy(split.fit)
    y_fit = torch.from_numpy(split.y[split.fit]).float()
    y_val = split.y[split.val]
    best, best_state, best_epoch, waited = -1.0, None, 0, 0
    for epoch in range(cfg.epochs):
        net.train()
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(net(x, cats, adjs)[fit], y_fit)
        loss.backward()
        opt.step()
        net.eval()
        with torch.no_grad():
            p_val = torch.sigmoid(net(x, cats, adjs)[split.val]).numpy()
        score = _ap(y_val, p_val)
        if score > best:
            best, best_epoch, waited = score, epoch, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    assert best_state is not None
    net.load_state_dict(best_state)
    net.eval()
    with torch.no_grad():
        p = torch.sigmoid(net(x, cats, adjs)).numpy().astype(np.float64)
    info: dict[str, Any] = {
        "best_epoch": best_epoch, "model": repr(net),
        "edges": int(sum(a.values().shape[0] for a in adjs)),
        "seconds": round(_time.perf_counter() - started, 1),
    }
    return ModelRun("gnn_label_free" if label_free else "gnn", p[split.val], p[split.test], info)
