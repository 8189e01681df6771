"""Cohort QC in a process that had joined its process group itself: the group is used and left joined.

``cohort_qc`` joins a ``torchrun`` job's group and leaves it at the end; a caller that joined
the group first (``init_distributed`` reuses it) must still be in it afterwards.
"""

from __future__ import annotations

import pytest
import torch

from dist_helpers import torchrun_cmd
from napari_imc_vae.engine.apply.use_case import ApplySettings
from napari_imc_vae.engine.cells.use_case import cohort_qc
from napari_imc_vae.io import read_imc

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")]

ROIS = ("20210305_NE_mockData1_002", "20210305_NE_mockData3_002")
SETTINGS = ApplySettings(device="cpu", max_quality_patches=64)


@pytest.fixture
def joined_group(one_gloo_process):
    """This process alone in a gloo group it joined itself (left again after the test)."""
    torch.distributed.init_process_group("gloo")


def test_cohort_qc_leaves_a_group_joined_before_it_joined(cells_model, imc_testdata, joined_group, tmp_path):
    images = [read_imc(imc_testdata / "steinbock_img" / f"{s}.ome.tiff") for s in ROIS]
    outcome = cohort_qc(cells_model, images, SETTINGS, output=tmp_path, order=ROIS)
    assert outcome.is_main and [r["roi"] for r in outcome.rows][::5] == list(ROIS)
    assert torch.distributed.is_initialized() and torch.distributed.get_world_size() == 1


HELPER = """
import sys
import torch.distributed as dist
from napari_imc_vae.engine.apply.use_case import ApplySettings
from napari_imc_vae.engine.cells.use_case import cohort_qc
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.io import read_imc

dist.init_process_group("gloo")  # the caller's own group, joined before cohort_qc
model, output, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
images = [read_imc(p) for p in paths]
outcome = cohort_qc(TrainedModel.load(model), images, ApplySettings(device="cpu", max_quality_patches=64),
                    output=output, order=[im.name for im in images])
joined = dist.is_initialized()
dist.barrier()  # the caller goes on using its group
# one file a rank: two processes printing to one stdout can interleave their lines
with open(f"{output}/rank{dist.get_rank()}.txt", "w") as f:
    f.write(f"rank {dist.get_rank()}: still joined {joined}, {len(outcome.rows)} rows")
dist.destroy_process_group()
"""


def test_cohort_qc_under_torchrun_leaves_the_callers_group_joined(cells_model, imc_testdata, tmp_path):
    import os
    import subprocess

    helper, model = tmp_path / "helper.py", cells_model.save(tmp_path / "m.pt")
    helper.write_text(HELPER)
    paths = [str(imc_testdata / "steinbock_img" / f"{s}.ome.tiff") for s in ROIS]
    cmd = torchrun_cmd(helper, model, tmp_path, *paths)
    run = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    # each process applied one image: the main one has both images' rows, the other its own
    said = sorted((tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1))
    assert said == ["rank 0: still joined True, 10 rows", "rank 1: still joined True, 5 rows"]
