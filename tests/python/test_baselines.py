"""tools/baselines.py scores the classical baselines on PhotoZ's folds, so its
object ids must be the CLI's, row for row (the folds hash them), and it must run."""
import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import baselines  # noqa: E402

COSMICAI = os.environ.get("COSMICAI_BIN", str(ROOT / "target" / "debug" / "cosmicai"))
SDSS17 = ROOT / "assets" / "catalogs" / "sdss17_star_classification.csv.gz"


def test_ids_are_the_clis_including_positions_that_end_in_a_half(tmp_path):
    out = subprocess.run(
        [COSMICAI, "catalog", "import", str(SDSS17), "--out", str(tmp_path / "d"), "--objects", "5000"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    t = load_file(str(tmp_path / "d" / "part-000000.safetensors"))
    ours = [baselines.object_id(float(r), float(d)) for r, d in zip(t["ra"], t["dec"])]
    assert ours == [int(i) for i in t["object_id"]]
    # Python's round() takes halves to even; the CLI's rounds them away from zero,
    # and a few percent of SDSS17 positions land on a half.
    halves = sum(1 for v in [*t["ra"], *t["dec"]] if abs(float(v) * 1e6) % 1 == 0.5)
    assert halves > 20, halves
    # The values engine/src/split.rs checks too.
    i = baselines.object_id(5.0000185, -1.5)
    assert i == 8043948083110639
    assert [baselines.fold(i, r, 5) for r in range(3)] == [4, 0, 0]


def test_baselines_run_on_a_small_catalog(tmp_path):
    import gzip

    lines = gzip.open(ROOT / "assets" / "catalogs" / "skyserver_dr14.csv.gz", "rt").read().splitlines()
    small = tmp_path / "dr14-1500.csv"
    small.write_text("\n".join(lines[:1501]) + "\n")
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "baselines.py"), "--catalog", str(small), "--folds", "3", "--json"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["dr14-1500.csv"]
    assert 0.8 < report["rf_class"]["class_accuracy"]["mean"] <= 1.0
    assert 0 < report["knn10_z_galaxies"]["galaxy_nmad"]["mean"] < 0.1
