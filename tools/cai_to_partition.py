"""Convert a CAI partition (a PyTorch TensorDataset saved with torch.save) into a
CosmicAI partition file (safetensors). See docs/partition-format.md.

    python tools/cai_to_partition.py cai/partition_0.pt data/cai/part-000000.safetensors

Needs numpy and safetensors; reading the .pt file also needs torch.
"""
import json
import sys

import numpy as np
from safetensors.numpy import save_file

GALAXY, STAR, QSO, UNKNOWN = 0, 1, 2, 255


def convert(images, magnitudes, redshift, out_path, source="CAI partition",
            provenance="real", object_class=GALAXY, ra=None, dec=None, first_id=0):
    """Write one partition from numpy arrays: images [N,5,H,W] (u,g,r,i,z),
    magnitudes [N,5], redshift [N]. Positions are unknown (NaN) unless given."""
    n = magnitudes.shape[0]
    if not np.isfinite(magnitudes).all():
        raise ValueError("magnitudes must be finite")
    tensors = {
        "object_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "ra": np.full(n, np.nan) if ra is None else np.asarray(ra, dtype=np.float64),
        "dec": np.full(n, np.nan) if dec is None else np.asarray(dec, dtype=np.float64),
        "magnitudes": np.ascontiguousarray(magnitudes, dtype=np.float32).reshape(n, 5),
        "redshift": np.ascontiguousarray(redshift, dtype=np.float32).reshape(n),
        "class": np.full(n, object_class, dtype=np.uint8),
        "source": np.zeros(n, dtype=np.int32),
    }
    if images is not None:
        tensors["images"] = np.ascontiguousarray(images, dtype=np.float32)
    metadata = {
        "format": "cosmicai.partition",
        "format_version": "1",
        "survey": "SDSS",
        "bands": "u,g,r,i,z",
        "pixel_scale_arcsec": "0.396",
        "image_units": "nanomaggies",
        "sources": json.dumps([{"name": source, "provenance": provenance, "detail": "converted from a CAI .pt partition"}]),
    }
    save_file(tensors, out_path, metadata=metadata)


def main(pt_path, out_path):
    import torch  # only needed to read CAI's .pt files

    dataset = torch.load(pt_path, weights_only=False)
    images, magnitudes, redshift = (t.numpy() for t in dataset.tensors[:3])
    convert(images, magnitudes, redshift, out_path, source=pt_path)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
