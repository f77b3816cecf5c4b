"""Classical photo-z baselines on the folds `cosmicai train --cross-validate` uses.

    .venv/bin/python tools/baselines.py --catalog assets/catalogs/*.csv.gz --folds 5 --repeats 1 [--json]

scikit-learn on ugriz and the four adjacent colours, as the issue that asked for
them: for z, 10 nearest neighbours (distance-weighted, standardised features) and
HistGradientBoosting; for the class, RandomForest and HistGradientBoosting. The
z models are scored on galaxies twice: trained on every labelled object (they
then know no more than PhotoZ, which is not told the class), and trained on
galaxies alone (told the class: the harder bar).

Rows are read as `engine::catalog` reads them (sentinel and impossible
magnitudes skipped, duplicates across files dropped), ids are its FNV-1a hash of
RA/Dec in micro-degrees, and folds are `engine::split::fold`, so every model is
scored on the same held-out objects as PhotoZ.
"""

import argparse
import csv
import gzip
import io
import json
import math
import sys
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.neighbors import KNeighborsRegressor
from sklearn.preprocessing import StandardScaler

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
CLASSES = {"GALAXY": 0, "STAR": 1, "QSO": 2, "QUASAR": 2}


def rust_round(x):
    # Rust's f64::round: halves away from zero (Python's round() goes to even).
    return int(Decimal(x).to_integral_value(rounding=ROUND_HALF_UP))


def object_id(ra, dec):
    h = 0xCBF29CE484222325
    for v in (rust_round(ra * 1e6), rust_round(dec * 1e6)):
        for b in (v & MASK64).to_bytes(8, "little"):
            h ^= b
            h = (h * 0x100000001B3) & MASK64
    return h & ((1 << 53) - 1)


def fold(oid, repeat, folds):
    z = (oid + (repeat + 1) * GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return z % folds


def read(path, seen):
    """Labelled rows with a redshift, as engine::catalog keeps them: a row with a
    bad magnitude, position or class is skipped; a duplicate position (across
    files too) is dropped whether or not the first had a redshift."""
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rows = csv.DictReader(io.StringIO(raw.decode()))
    cols = {c.strip().lower(): c for c in rows.fieldnames}
    ra_c = cols.get("ra", cols.get("alpha"))
    dec_c = cols.get("dec", cols.get("delta"))
    z_c = next((cols[c] for c in ("redshift", "z_spec", "specz") if c in cols), None)
    f32 = lambda v: float(np.float32(float(v)))
    out = []
    for r in rows:
        try:
            mags = [f32(r[cols[b]]) for b in "ugriz"]
            ra, dec = float(r[ra_c]), float(r[dec_c])
            cls = CLASSES.get((r[cols["class"]] or "").strip().upper())
        except (ValueError, KeyError, TypeError):
            continue
        if any(m <= -999 or not math.isfinite(m) or not (0 < m < 35) for m in mags):
            continue
        if not (0 <= ra <= 360 and -90 <= dec <= 90) or cls is None:
            continue
        oid = object_id(ra, dec)
        if oid in seen:
            continue
        seen.add(oid)
        try:
            z = f32(r[z_c]) if z_c else math.nan
        except (ValueError, TypeError):
            z = math.nan
        if math.isfinite(z):
            out.append((oid, mags, cls, z, ra, dec))
    return out


def features(mags):
    m = np.asarray(mags, dtype=np.float64)
    return np.hstack([m, m[:, :4] - m[:, 1:]])


def galaxy_figures(z_pred, z_spec, cls):
    g = cls == 0
    if not g.any():
        return {}
    dz = (z_pred[g] - z_spec[g]) / (1 + z_spec[g])
    return {
        "galaxy_nmad": float(1.4826 * np.median(np.abs(dz - np.median(dz)))),
        "galaxy_bias": float(dz.mean()),
        "galaxy_outlier_frac_0_15": float(np.mean(np.abs(dz) > 0.15)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", nargs="+", required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    seen = set()
    names = [p.split("/")[-1] for p in args.catalog]
    if len(set(names)) != len(names):
        sys.exit("two catalogs share a file name: their figures would be mixed")
    catalogs = {name: read(p, seen) for name, p in zip(names, args.catalog)}
    ids = np.array([o[0] for c in catalogs.values() for o in c], dtype=np.uint64)
    X = features([o[1] for c in catalogs.values() for o in c])
    cls = np.array([o[2] for c in catalogs.values() for o in c])
    z = np.array([o[3] for c in catalogs.values() for o in c])
    source = np.concatenate([[name] * len(c) for name, c in catalogs.items()])
    models = {
        "knn10_z_all": lambda: ("z", "all", KNeighborsRegressor(10, weights="distance")),
        "hgb_z_all": lambda: ("z", "all", HistGradientBoostingRegressor(random_state=0)),
        "knn10_z_galaxies": lambda: ("z", "galaxy", KNeighborsRegressor(10, weights="distance")),
        "hgb_z_galaxies": lambda: ("z", "galaxy", HistGradientBoostingRegressor(random_state=0)),
        "rf_class": lambda: ("class", "all", RandomForestClassifier(200, n_jobs=-1, random_state=0)),
        "hgb_class": lambda: ("class", "all", HistGradientBoostingClassifier(random_state=0)),
    }
    figures = {}  # (catalog, model) -> list of per-fold dicts
    for repeat in range(args.repeats):
        f = np.array([fold(int(i), repeat, args.folds) for i in ids])
        for k in range(args.folds):
            test, train = f == k, f != k
            scaler = StandardScaler().fit(X[train])
            for name, make in models.items():
                target, on, model = make()
                fit = train & (cls == 0) if on == "galaxy" else train
                xs = scaler.transform if name.startswith("knn") else (lambda a: a)
                model.fit(xs(X[fit]), z[fit] if target == "z" else cls[fit])
                for cat in catalogs:
                    sel = test & (source == cat)
                    if not sel.any():
                        continue
                    pred = model.predict(xs(X[sel]))
                    if target == "z":
                        fig = galaxy_figures(pred, z[sel], cls[sel])
                    else:
                        fig = {"class_accuracy": float(np.mean(pred == cls[sel]))}
                    if fig:
                        figures.setdefault((cat, name), []).append(fig)
            print(f"repeat {repeat + 1} fold {k + 1} done", file=sys.stderr)
    report = {}
    for (cat, name), folds in figures.items():
        keys = folds[0].keys()
        report.setdefault(cat, {})[name] = {
            key: {
                "mean": float(np.mean([x[key] for x in folds])),
                "sd": float(np.std([x[key] for x in folds], ddof=1)) if len(folds) > 1 else 0.0,
            }
            for key in keys
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.folds}-fold x {args.repeats} repeats, mean ± sd over folds (the folds of cosmicai train --cross-validate)")
    for cat, models_ in report.items():
        print(f"  {cat}:")
        for name, figs in models_.items():
            text = "  ".join(f"{k} {v['mean']:.4f} ± {v['sd']:.4f}" for k, v in figs.items())
            print(f"    {name:18} {text}")


if __name__ == "__main__":
    main()
