"""S-FFSD: our transaction model under the published protocol and under a time split,
beside the published GTAN and RGTAN figures.

    .venv/bin/python bench/sffsd.py [--data PATH] [--out bench/results/sffsd.json]

Prints a table and writes JSON with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_info  # noqa: E402
from gnn import sffsd  # noqa: E402

PUBLISHED = {
    "GTAN": {"auc": 0.8286, "f1_macro": 0.7336, "ap": 0.6585, "test_size": 0.2},
    "RGTAN": {"auc": 0.8461, "f1_macro": 0.7513, "ap": 0.6939, "test_size": 0.3},
}
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "s-ffsd" / "S-FFSD.csv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("bench/results/sffsd.json"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    table = sffsd.load_transactions(args.data)
    runs = {}
    for name, pub in PUBLISHED.items():
        train, test = sffsd.published_split(table.labels, pub["test_size"], random_state=2)
        runs[f"published_vs_{name}"] = sffsd.evaluate_protocol(
            table, train, test, by_time=False, seed=args.seed
        ) | {"protocol": f"stratified random, test_size={pub['test_size']}, random_state=2"}
    train, test = sffsd.time_split(table.time, 0.3)
    runs["time_split"] = sffsd.evaluate_protocol(
        table, train, test, by_time=True, seed=args.seed
    ) | {"protocol": "train Time < 70% quantile, test the rest"}

    print(f"S-FFSD ({len(table):,} rows, sha256 ok: {table.sha256 == sffsd.SFFSD_SHA256})")
    print(f"{'run':<22}{'AUC':>8}{'F1mac':>8}{'AP':>8}{'R@1%':>8}   published")
    for key, r in runs.items():
        pub = PUBLISHED.get(key.removeprefix("published_vs_"))
        ref = (f"{key.removeprefix('published_vs_')}: AUC {pub['auc']:.4f} "
               f"F1 {pub['f1_macro']:.4f} AP {pub['ap']:.4f}") if pub else "-"
        print(f"{key:<22}{r['auc']:>8.4f}{r['f1_macro']:>8.4f}{r['ap']:>8.4f}"
              f"{r['recall_at_1pct_fpr']:>8.4f}   {ref}")
    result = {
        "dataset": "S-FFSD",
        "sha256": table.sha256,
        "model": "LightGBM on time-ordered risk-aware neighbour statistics (gnn/sffsd.py)",
        "label_use": "only labels of training rows, only from strictly earlier rows",
        "published": PUBLISHED,
        "runs": runs,
        "machine": machine_info(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
