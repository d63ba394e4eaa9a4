"""Training the user model, full batch, with the baselines in the same run.

Splits:

* ``random``: labelled users split stratified (test 30%), validation 15% of the rest;
* ``time``: users ordered by signup time; the last 30% of labelled users by signup are
  the test set. The training graph is exported *as of* the cut: payments and links that
  began at or after it are absent, and a fraud label whose ``fraud_ts`` is at or after
  the cut is not known. Scaling statistics come from training users only. Test users
  are then scored on the full graph.

Labels visible as neighbour evidence while evaluating: training users' only. The
user's own label never reaches its own inputs (see gnn.models).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from gnn.baselines import (
    fit_predict_lgbm,
    graph_aggregates,
    matched_aggregates,
    sample_trials,
)
from gnn.boost import OwnTreeScorer, fit_folds
from gnn.errors import NotEnoughLabelsError
from gnn.features import (
    FeatureSpec,
    common_channels,
    encode,
    fit_spec,
    payment_features,
    raw_user_matrix,
)
from gnn.metrics import binary_metrics, by_kind, paired_bootstrap_ap_diff
from gnn.models import RelationalRiskGNN
from gnn.tensors import GraphArrays, to_heterodata

HEADS = ("fraud", "relational", "own")


@dataclass
class TrainConfig:
    seed: int = 0
    split: str = "random"  # random | time
    test_size: float = 0.3
    val_size: float = 0.15
    hidden: int = 32
    dropout: float = 0.0
    lr: float = 0.01
    weight_decay: float = 1e-4
    max_epochs: int = 300
    patience: int = 30
    relation_dropout: float = 0.5  # see gnn.models
    min_epochs: int = 40  # the relational branch needs a few epochs to start to count
    max_item_users: int = 50
    # torch threads. On the shared 2-core machine two OpenMP threads ran 4-8x slower
    # than one whenever the other core was busy, so one is the default.
    threads: int = 1
    # the tuning budget of every model (LightGBM baselines, the trees feeding the
    # network, the network): this many seeded settings, the best on validation AP
    trials: int = 3


# The network's search space; trial 0 is the TrainConfig defaults.
GNN_SPACE: dict[str, list[Any]] = {
    "hidden": [32, 64], "lr": [0.005, 0.01, 0.02], "weight_decay": [0.0, 1e-4, 1e-3],
    "relation_dropout": [0.3, 0.5],
}


@dataclass
class UserModel:
    """A trained model and everything needed to apply it the same way later."""

    net: RelationalRiskGNN
    spec: FeatureSpec
    calibration: dict[str, tuple[float, float]]  # head -> (a, b): sigmoid(a * logit + b)
    config: TrainConfig
    tree: OwnTreeScorer | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    split: dict[str, list[str]] = field(default_factory=dict)
    # fold trees on own features and every graph signal (gnn.baselines), whose logit
    # is an input of the fraud head
    graph_tree: OwnTreeScorer | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "in_channels": self.net.in_channels,
            "item_rels": self.net.item_rels,
            "direct_rels": self.net.direct_rels,
            "hidden": self.net.hidden_channels,
            "dropout": self.net.dropout,
            "stack_channels": self.net.stack_channels,
            "fraud_from_stack": self.net.fraud_from_stack,
            "calibration": {k: list(v) for k, v in self.calibration.items()},
            "config": asdict(self.config),
            "spec": self.spec.to_dict(),
        }


def seed_everything(seed: int, threads: int = 2) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def label_input(y: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """[known fraud, known legitimate] per user; zeros where the label is not visible."""
    vis = np.asarray(visible, bool) & np.isfinite(y)
    return np.stack([vis & (y == 1), vis & (y == 0)], axis=1).astype(np.float32)


TREE_COLUMN = "own_tree_logit"


def raw_features(g: GraphArrays, reference_ms: float, channels: list[str]
                 ) -> tuple[np.ndarray, list[str]]:
    pay = payment_features(g.n_users, g.paid_user, g.paid["amount"], g.paid["ts"],
                           g.paid["channel"], reference_ms, channels, g.paid.get("merchant"))
    return raw_user_matrix(g.users, pay, reference_ms, channels)


def with_tree(raw: np.ndarray, names: list[str], tree_logit: np.ndarray
              ) -> tuple[np.ndarray, list[str]]:
    return np.hstack([raw, tree_logit[:, None]]), [*names, TREE_COLUMN]


def _split(y: np.ndarray, signup: np.ndarray, cfg: TrainConfig
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | None]:
    from sklearn.model_selection import train_test_split

    lab = np.nonzero(np.isfinite(y))[0]
    if len(lab) < 20 or len(np.unique(y[lab])) < 2:
        raise NotEnoughLabelsError(
            f"training needs labelled users of both classes; found {len(lab)} labelled "
            "users; load users with is_fraud set"
        )
    if cfg.split == "time":
        t = np.nan_to_num(signup[lab], nan=-np.inf)
        cut = float(np.quantile(t[np.isfinite(t)], 1 - cfg.test_size))
        train, test = lab[t < cut], lab[t >= cut]
        tt = t[t < cut]
        vcut = np.quantile(tt[np.isfinite(tt)], 1 - cfg.val_size)
        fit, val = train[tt < vcut], train[tt >= vcut]
        return fit, val, test, cut
    train, test = train_test_split(lab, test_size=cfg.test_size, stratify=y[lab],
                                   random_state=cfg.seed)
    fit, val = train_test_split(train, test_size=cfg.val_size, stratify=y[train],
                                random_state=cfg.seed)
    return np.sort(fit), np.sort(val), np.sort(test), None


def _platt(logit: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1.0)
    lr.fit(logit.reshape(-1, 1), y.astype(int))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def calibrated(logit: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    z = ab[0] * np.asarray(logit, np.float64) + ab[1]
    return 1.0 / (1.0 + np.exp(-z))


def _ap(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p))


def fit_network(data: Any, y: np.ndarray, fit: np.ndarray, val: np.ndarray, cfg: TrainConfig,
                item_rels: list[str], direct_rels: list[str]
                ) -> tuple[RelationalRiskGNN, dict[str, Any]]:
    """Full-batch training with a positive-class weight and early stopping on the
    validation loss."""
    seed_everything(cfg.seed, cfg.threads)
    stack = getattr(data["user"], "stack_in", None)
    net = RelationalRiskGNN(data["user"].x.size(1), item_rels, direct_rels, cfg.hidden,
                            cfg.dropout, 0 if stack is None else int(stack.size(1)))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    yt = torch.from_numpy(y[fit].astype(np.float32))
    fit_t = torch.from_numpy(fit)
    val_t = torch.from_numpy(val)
    yv = torch.from_numpy(y[val].astype(np.float32))
    pos = float(y[fit].sum())
    pos_weight = torch.tensor((len(fit) - pos) / max(pos, 1.0)).sqrt()
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    best, best_state, best_epoch, waited = -1.0, None, 0, 0
    history = []
    n = int(data["user"].num_nodes)
    is_fit = torch.zeros(n, dtype=torch.bool)
    is_fit[fit_t] = True
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.max_epochs):
        net.train()
        opt.zero_grad()
        # only training rows lose links; validation rows see the whole graph, so this
        # pass also gives their evaluation scores
        keep = {
            r: ((torch.rand(n, generator=gen) >= cfg.relation_dropout) | ~is_fit)
            .float().unsqueeze(1)
            for r in (*item_rels, *direct_rels)
        }
        out = net(data, keep)
        if cfg.dropout == 0:
            # no dropout: this pass is what evaluation would compute for these weights
            val_out = {h: out[h][val_t].detach() for h in HEADS}
        else:
            net.eval()
            with torch.no_grad():
                full_out = net(data)
                val_out = {h: full_out[h][val_t] for h in HEADS}
            net.train()
            out = net(data, keep)
        # selection on the validation loss of all three heads: smoother than AP on the
        # few validation frauds, and it keeps every head improving
        with torch.no_grad():
            score = -float(sum(loss_fn(val_out[h], yv) for h in HEADS))
        if score > best + 1e-5:
            best, best_epoch, waited = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= cfg.patience and epoch >= cfg.min_epochs:
                break
        history.append(round(score, 5))
        loss = sum(loss_fn(out[h][fit_t], yt) for h in HEADS)
        loss.backward()
        opt.step()
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    with torch.no_grad():
        val_ap = _ap(y[val], net(data)["fraud"][val_t].numpy())
    return net, {"best_epoch": best_epoch, "epochs_run": len(history), "val_loss": -best,
                 "val_ap": val_ap}


def relational_views(net: RelationalRiskGNN, data: Any, val: np.ndarray, y: np.ndarray,
                     cfg: TrainConfig, views: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Validation logits of the relational head on the whole graph and on ``views``
    random partial views (links of each type hidden as in training). Calibrating on them
    makes one strong link count as it did in training: a ring member seen only through
    its device is still a ring member."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    n = int(data["user"].num_nodes)
    rels = (*net.item_rels, *net.direct_rels)
    out_logits, out_y = [], []
    with torch.no_grad():
        for v in range(views + 1):
            keep = None if v == 0 else {
                r: (torch.rand(n, generator=gen) >= cfg.relation_dropout).float().unsqueeze(1)
                for r in rels
            }
            out_logits.append(net(data, keep)["relational"][torch.from_numpy(val)].numpy())
            out_y.append(y[val])
    return np.concatenate(out_logits).astype(np.float64), np.concatenate(out_y)


def logits(net: RelationalRiskGNN, data: Any) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = net(data)
    return {h: out[h].numpy().astype(np.float64) for h in HEADS}


def train_user_model(
    full: GraphArrays, cfg: TrainConfig, as_of: GraphArrays | None = None,
    export_as_of: Any = None,
) -> UserModel:
    """Train on ``full`` (random split) or on the graph as of the time cut (time split:
    ``export_as_of(cut_ms)`` returns it). Returns the model with its test metrics and
    the baselines' metrics from the same split."""
    started = time.perf_counter()
    seed_everything(cfg.seed, cfg.threads)
    y_full = full.labels()
    signup = np.asarray(full.users["signup_ts"], np.float64)
    fit, val, test, cut = _split(y_full, signup, cfg)
    train_g = full
    y_train = y_full.copy()
    if cut is not None:
        train_g = export_as_of(cut) if as_of is None else as_of
        if not np.array_equal(train_g.user_ids, full.user_ids):
            raise NotEnoughLabelsError("the as-of export must list the same users")
        fts = np.asarray(full.users.get("fraud_ts", np.full(full.n_users, np.nan)), np.float64)
        y_train = np.where((y_full == 1) & (fts >= cut), np.nan, y_full)
        fit = fit[np.isfinite(y_train[fit])]
        val = val[np.isfinite(y_train[val])]
    train_rows = np.concatenate([fit, val])
    y_fit = np.nan_to_num(y_train)
    channels = common_channels(train_g.paid["channel"])
    raw_tr, names = raw_features(train_g, train_g.max_time_ms, channels)
    if cut is not None:
        raw_te, _ = raw_features(full, full.max_time_ms, channels)
    else:
        raw_te = raw_tr
    visible = np.zeros(full.n_users, bool)
    visible[train_rows] = True
    lab_tr = label_input(y_train, visible)
    lab_te = lab_tr

    ids_all = full.user_ids
    base: dict[str, Any] = {}
    tuning: dict[str, Any] = {}
    test_pred: dict[str, np.ndarray] = {}

    def baseline(name: str, x_tr: np.ndarray, x_te: np.ndarray) -> Any:
        x = x_tr.copy()
        x[test] = x_te[test]
        tf = fit_predict_lgbm(x, y_fit, fit, val, test, cfg.seed, cfg.trials)
        base[name] = binary_metrics(y_full[test], tf.pred)
        tuning[name] = tf.tuning
        test_pred[name] = tf.pred
        return tf

    # own features; the fold trees feeding the network take its rounds and settings
    own = baseline("lgbm_own", raw_tr, raw_te)
    tree, tree_logit = fit_folds(raw_tr, y_fit, train_rows, ids_all, own.rounds, cfg.seed,
                                 params=own.params)
    tree_te = tree.logit(raw_te, ids_all) if cut is not None else tree_logit
    agg_tr, agg_names = graph_aggregates(train_g, raw_tr, names, lab_tr)
    mat_tr, mat_names = matched_aggregates(train_g, lab_tr, tree_logit)
    if cut is not None:
        agg_te = graph_aggregates(full, raw_te, names, lab_te)[0]
        mat_te = matched_aggregates(full, lab_te, tree_te)[0]
    else:
        agg_te, mat_te = agg_tr, mat_tr
    baseline("lgbm_graph", np.hstack([raw_tr, agg_tr]), np.hstack([raw_te, agg_te]))
    matched = baseline("lgbm_matched", np.hstack([raw_tr, agg_tr, mat_tr]),
                       np.hstack([raw_te, agg_te, mat_te]))
    baseline_seconds = time.perf_counter() - started

    # GBDT feeding the network: fold trees on everything lgbm_matched sees, their
    # logit (out-of-fold for training users) an input of the fraud head
    graph_tree, stack_logit = fit_folds(np.hstack([raw_tr, agg_tr, mat_tr]), y_fit, train_rows,
                                        ids_all, matched.rounds, cfg.seed, params=matched.params)
    raw_tr_t, names_t = with_tree(raw_tr, names, tree_logit)
    spec = fit_spec(raw_tr_t, names_t, train_rows, train_g.max_time_ms, channels)
    item_rels = list(train_g.item_edges)
    direct_rels = list(train_g.direct_edges)
    data_tr = to_heterodata(train_g, encode(raw_tr_t, spec), lab_tr)
    data_tr["user"].stack_in = torch.from_numpy(stack_logit.astype(np.float32)[:, None])
    trials = []
    best_net: tuple[float, RelationalRiskGNN, dict[str, Any], TrainConfig] | None = None
    for i, extra in enumerate(sample_trials(GNN_SPACE, cfg.trials, cfg.seed)):
        tcfg = replace(cfg, **extra)
        net_i, info_i = fit_network(data_tr, y_fit, fit, val, tcfg, item_rels, direct_rels)
        trials.append({"trial": i, "params": extra, "val_ap": info_i["val_ap"],
                       "epochs": info_i["epochs_run"]})
        if best_net is None or info_i["val_ap"] > best_net[0]:
            best_net = (info_i["val_ap"], net_i, info_i, tcfg)
    assert best_net is not None
    _, net, info, net_cfg = best_net
    tuning["gnn"] = {"trials": trials, "chosen": int(np.argmax([t["val_ap"] for t in trials]))}
    # what ships as fraud_risk, chosen on validation AP only: the network's fraud head,
    # or the stacked trees' logit alone
    val_ap_trees = _ap(y_fit[val], stack_logit[val])
    selection = {"gnn_fraud_head": info["val_ap"], "graph_trees": val_ap_trees}
    net.fraud_from_stack = bool(val_ap_trees > info["val_ap"])
    selection["shipped"] = "graph_trees" if net.fraud_from_stack else "gnn_fraud_head"
    lg_tr = logits(net, data_tr)
    calib = {h: _platt(lg_tr[h][val], y_fit[val]) for h in HEADS}
    calib["relational"] = _platt(*relational_views(net, data_tr, val, y_fit, net_cfg))
    train_seconds = time.perf_counter() - started

    spec.reference_ms = full.max_time_ms
    ids = full.user_ids
    split = {"fit": ids[fit].tolist(), "val": ids[val].tolist(), "test": ids[test].tolist()}
    model = UserModel(net, spec, calib, net_cfg, tree, {"training": {"cut_ms": cut}}, split,
                      graph_tree)
    model.metrics["baseline_test_scores"] = {k: v.tolist() for k, v in test_pred.items()}
    # test metrics through the path `evaluate` takes, on the full graph
    probs = evaluation_scores(model, full, test)
    metrics: dict[str, Any] = compare(model, full, test, probs)
    metrics["tuning"] = tuning
    metrics["selection"] = selection
    metrics["baseline_test_scores"] = model.metrics["baseline_test_scores"]
    metrics["training"] = {
        **info, "seconds": round(train_seconds, 2),
        "baseline_seconds": round(baseline_seconds, 2), "users": full.n_users,
        "fit": len(fit), "val": len(val), "test": len(test), "split": cfg.split,
        "cut_ms": cut, "tree_rounds": own.rounds, "graph_aggregate_features": agg_names,
        "matched_features": mat_names,
    }
    model.metrics = metrics
    return model


def evaluation_labels(model: UserModel, g: GraphArrays) -> np.ndarray:
    """The label input while evaluating: the training users' labels (fit and
    validation), as training saw them (a fraud known only after a time split's cut is
    unknown); nobody else's."""
    index = g.index_of()
    rows = [index[u] for u in model.split.get("fit", []) + model.split.get("val", [])
            if u in index]
    visible = np.zeros(g.n_users, bool)
    visible[rows] = True
    y = g.labels()
    cut = model.metrics.get("training", {}).get("cut_ms")
    if cut is not None:
        fts = np.asarray(g.users.get("fraud_ts", np.full(g.n_users, np.nan)), np.float64)
        y = np.where((y == 1) & (fts >= cut), np.nan, y)
    return label_input(y, visible)


def model_input(model: UserModel, g: GraphArrays, label_in: np.ndarray) -> Any:
    """The network's input for ``g``: own features with the fold trees' logit, encoded
    with the saved spec, and ``label_in``. The one feature path of training,
    evaluation and scoring."""
    x, stack = user_inputs(model, g, label_in)
    data = to_heterodata(g, x, label_in)
    if stack is not None:
        data["user"].stack_in = torch.from_numpy(stack)
    return data


def user_inputs(model: UserModel, g: GraphArrays, label_in: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """The encoded own features (with the own trees' logit) and, for a model with
    graph trees, their logit on own features and graph aggregates (n x 1)."""
    raw, names = raw_features(g, model.spec.reference_ms, model.spec.channels)
    raw_t = raw
    if model.tree is not None:
        tree_logit = model.tree.logit(raw, g.user_ids)
        raw_t, names = with_tree(raw, names, tree_logit)
    stack = None
    if model.graph_tree is not None and model.tree is not None:
        agg = graph_aggregates(g, raw, names[: raw.shape[1]], label_in)[0]
        mat = matched_aggregates(g, label_in, tree_logit)[0]
        stack = model.graph_tree.logit(np.hstack([raw, agg, mat]), g.user_ids)
        stack = stack.astype(np.float32)[:, None]
    return encode(raw_t, model.spec), stack


def evaluation_scores(model: UserModel, g: GraphArrays, rows: np.ndarray
                      ) -> dict[str, np.ndarray]:
    """Calibrated probabilities of the three heads for ``rows`` of ``g``, with the
    labels visible while evaluating (``evaluation_labels``)."""
    lg = logits(model.net, model_input(model, g, evaluation_labels(model, g)))
    return {h: calibrated(lg[h][rows], model.calibration[h]) for h in HEADS}


def compare(model: UserModel, g: GraphArrays, test: np.ndarray,
            probs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Test metrics of the model's heads beside the baselines of its training run (their
    saved test scores): overall, by fraud kind when users carry ``fraud_kind``, and the
    paired-bootstrap interval of the model's AP minus each baseline's."""
    y = g.labels()[test].astype(int)
    saved = model.metrics.get("baseline_test_scores", {})
    out: dict[str, Any] = {
        "model": binary_metrics(y, probs["fraud"]),
        "heads": {h: binary_metrics(y, probs[h]) for h in ("relational", "own")},
        "baselines": {k: binary_metrics(y, np.asarray(v)) for k, v in saved.items()},
    }
    out["ap_diff_ci"] = {k: paired_bootstrap_ap_diff(y, probs["fraud"], np.asarray(v),
                                                     seed=model.config.seed)
                         for k, v in saved.items()}
    kinds = g.users.get("fraud_kind")
    if kinds is not None and any(isinstance(k, str) and k for k in kinds[test].tolist()):
        scores = {"model": probs["fraud"], **{k: np.asarray(v) for k, v in saved.items()}}
        out["by_kind"] = by_kind(kinds[test], scores)
    return out
