"""Peak-memory cost of writing one checkpoint file: building it in memory (safetensors `save` -> bytes, what
tunelab did before) against streaming it to disk (`training.checkpoint._write_tensors_synced`).

Each variant runs in its own process so peak RSS is not shared. 68 x 1M fp32 tensors = 272 MB, about
MiniLM's weights plus its AdamW moments (a full fine-tune's checkpoint).

    python benchmarks/checkpoint_rss.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

CHILD = r"""
import hashlib, resource, sys, torch
from pathlib import Path
tensors = {f"w{i}": torch.randn(1024, 1024) for i in range(68)}
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
path = Path(sys.argv[2])
if sys.argv[1] == "in_memory":
    from safetensors.torch import save
    data = save(tensors, metadata={"format": "pt"}); path.write_bytes(data); hashlib.sha256(data).hexdigest()
else:
    from tunelab.training.checkpoint import _write_tensors_synced
    _write_tensors_synced(path, tensors)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base)
"""


def main() -> None:
    extra = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("in_memory", "streamed"):
            out = subprocess.run([sys.executable, "-c", CHILD, variant, f"{tmp}/{variant}.safetensors"],
                                 capture_output=True, text=True, check=True)
            extra[variant] = round(float(out.stdout.strip().splitlines()[-1]), 1)
            print(f"{variant:>10}: +{extra[variant]:.0f} MiB peak RSS to write 272 MB of tensors")
    print(json.dumps({"checkpoint_extra_rss_mib": extra}))


if __name__ == "__main__":
    main()
