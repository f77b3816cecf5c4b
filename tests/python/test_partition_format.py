"""The partition format is language-neutral: Python reads what the Rust CLI
writes, and the CLI reads what tools/cai_to_partition.py writes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from cai_to_partition import convert  # noqa: E402

COSMICAI = os.environ.get("COSMICAI_BIN", str(ROOT / "target" / "debug" / "cosmicai"))


def cosmicai(*args):
    out = subprocess.run([COSMICAI, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_python_reads_a_partition_the_cli_wrote(tmp_path):
    catalog = ROOT / "assets" / "catalogs" / "skyserver_dr14.csv.gz"
    cosmicai("catalog", "import", str(catalog), "--out", str(tmp_path / "d"), "--objects", "1000")
    path = tmp_path / "d" / "part-000000.safetensors"
    tensors = load_file(str(path))
    assert tensors["magnitudes"].shape == (1000, 5) and tensors["magnitudes"].dtype == np.float32
    assert tensors["redshift"].shape == (1000,)
    assert tensors["class"].dtype == np.uint8 and set(np.unique(tensors["class"])) <= {0, 1, 2}
    assert tensors["ra"].dtype == np.float64 and tensors["object_id"].dtype == np.int64
    assert "images" not in tensors  # catalog only
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    assert meta["format"] == "cosmicai.partition" and meta["bands"] == "u,g,r,i,z"
    sources = json.loads(meta["sources"])
    assert sources[0]["provenance"] == "real" and sources[0]["name"] == "skyserver_dr14.csv"
    # The first row of the real catalog.
    np.testing.assert_allclose(tensors["magnitudes"][0], [19.47406, 17.0424, 15.94699, 15.50342, 15.22531], rtol=1e-6)


def test_cli_reads_a_converted_cai_partition(tmp_path):
    rng = np.random.default_rng(0)
    n = 7
    images = rng.normal(size=(n, 5, 32, 32)).astype(np.float32)
    magnitudes = rng.uniform(15, 22, size=(n, 5)).astype(np.float32)
    redshift = rng.uniform(0, 0.4, size=n).astype(np.float32)
    out = tmp_path / "cai.safetensors"
    convert(images, magnitudes, redshift, str(out), source="partition_0.pt")
    summary = json.loads(cosmicai("inspect", str(out), "--json"))
    assert summary["objects"] == n
    assert summary["images"] == {"objects": n, "height": 32, "width": 32}
    assert summary["classes"]["GALAXY"] == n
    assert summary["provenance"]["real"] == n
    assert abs(summary["redshift"]["max"] - float(redshift.max())) < 1e-6


def test_cli_rejects_nan_magnitudes_written_from_python(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "nan.safetensors"
    convert(None, np.full((2, 5), 18.0, np.float32), np.zeros(2, np.float32), str(path))
    tensors = load_file(str(path))
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    tensors["magnitudes"][1, 3] = np.nan
    save_file(tensors, str(path), metadata=meta)
    out = subprocess.run([COSMICAI, "inspect", str(path)], capture_output=True, text=True)
    assert out.returncode != 0
    assert "magnitudes" in out.stderr and "nan.safetensors" in out.stderr and "panicked" not in out.stderr
