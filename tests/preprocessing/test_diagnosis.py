"""channel_stats and diagnose: values, constant/empty channels, verdicts, JSON safety."""

import json
import math

import numpy as np
import pytest

from napari_imc_vae.io import ImcImage
from napari_imc_vae.preprocessing import Normalizer, channel_stats, diagnose


def _no_nan(text: str):
    def refuse(token):
        raise AssertionError(f"non-finite {token} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_channel_stats_hand_computed_and_finite_only():
    data = np.array([[0, 0, 2, 4, np.nan, np.inf]], dtype=np.float32).reshape(1, 2, 3)
    (st,) = channel_stats(data, ["CK5"])
    assert st.name == "CK5" and st.n_pixels == 6 and st.n_finite == 4 and st.nonfinite == 2
    assert (st.min, st.median, st.mean, st.max) == (0, 1, 1.5, 4)
    assert st.std == pytest.approx(math.sqrt(np.var([0, 0, 2, 4])))
    assert st.p99 == pytest.approx(np.percentile([0, 0, 2, 4], 99))
    assert st.zero_fraction == 0.5
    assert st.scale == st.p99


def test_channel_stats_empty_sparse_and_names():
    data = np.zeros((3, 20, 20), dtype=np.float32)
    data[1, 0, 0] = 8.0  # sparse: p99 is 0, the scale falls back to max
    data[2] = np.nan
    stats = channel_stats(data)
    assert [s.name for s in stats] == ["ch0", "ch1", "ch2"]
    assert stats[0].is_empty and stats[0].scale is None
    assert stats[1].p99 == 0 and stats[1].scale == 8.0 and not stats[1].is_empty
    assert stats[2].n_finite == 0 and stats[2].mean is None and stats[2].zero_fraction is None
    assert stats[2].is_empty and stats[2].is_constant
    json.dumps([s.to_dict() for s in stats], allow_nan=False)
    with pytest.raises(ValueError, match=r"one name per channel \(3\), got 2"):
        channel_stats(data, ["a", "b"])


def _panel(rng):
    data = rng.poisson(2.0, size=(5, 32, 32)).astype(np.float32)
    data[1] *= 1000  # 1000× the others' scale
    data[3] = 0  # empty
    data[4] = 3  # constant
    data[0, 0, 0] = np.nan
    metals = ["La139", "Pr141", "Nd143", "Sm147", "Eu151"]
    return ImcImage(data, ["A", "B", "C", "D", "E"], metals=metals, source="mock.ome.tiff")


def test_diagnose_verdicts(rng):
    image = _panel(rng)
    result = diagnose(image, Normalizer.fit(image, arcsinh_cofactor=5, clip_percentile=99.9))
    assert result.scales_differ and result.scale_ratio > 100
    assert result.constant_channels == ["D", "E"] and result.empty_channels == ["D"]
    assert result.normalized_ok and result.offenders == []
    for st in result.after:
        if st.name in ("D", "E"):
            assert st.min == st.max == 0
    assert result.after[0].nonfinite == 1  # NaN kept through normalization
    d = _no_nan(json.dumps(result.to_dict(), allow_nan=False))
    assert d["verdicts"]["scales_differ"] is True
    assert d["largest_scale_channel"] == "B"
    assert d["verdicts"]["constant_channels"] == ["D", "E"]
    text = result.format_text()
    assert "[!] channel scales differ more than 100×" in text
    assert "D (empty), E" in text and "nan" not in text.lower()
    # the two tables align: every row of a table has the same width
    table = text.split("Before normalization\n")[1].split("\n\n")[0].splitlines()
    assert len(table) == 6 and len({len(r) for r in table}) == 1


def test_diagnose_lists_offenders_with_a_foreign_normalizer(rng):
    image = _panel(rng)
    other = ImcImage(image.data * 3 + 5, image.channel_names, metals=image.metals)
    result = diagnose(image, Normalizer.fit(other))
    assert not result.normalized_ok
    names = [o["name"] for o in result.offenders]
    assert "A" in names and "D" not in names and "E" not in names
    assert "[!] after normalization these channels miss" in result.format_text()


def test_diagnose_defaults_and_channel_order(rng):
    image = _panel(rng)
    order = [4, 2, 0, 1, 3]
    shuffled = ImcImage(image.data[order], [image.channel_names[i] for i in order],
                        metals=[image.metals[i] for i in order])
    norm = Normalizer.fit(image)
    result = diagnose(shuffled, norm)
    assert [s.name for s in result.before] == norm.channel_names
    assert result.normalized_ok
    plain = diagnose(image.data)  # an array, z-score fitted on itself
    assert [s.name for s in plain.before] == ["ch0", "ch1", "ch2", "ch3", "ch4"]


def test_diagnose_all_empty_image():
    result = diagnose(np.zeros((2, 4, 4), dtype=np.float32))
    assert result.scale_ratio is None and not result.scales_differ
    assert result.constant_channels == ["ch0", "ch1"]
    _no_nan(json.dumps(result.to_dict(), allow_nan=False))
    assert "no channel has a scale" in result.format_text()
