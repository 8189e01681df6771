"""The Normalizer: values, constant channels, NaN, inverse, storage, bad input."""

import io
import json
import math

import numpy as np
import pytest

from napari_imc_vae.io import ImcImage
from napari_imc_vae.preprocessing import ChannelMismatchError, NormalizationParams, Normalizer
from napari_imc_vae.preprocessing.streaming import fit_streaming


def _image(rng, n=4, size=(20, 30)):
    data = rng.poisson(3.0, size=(n, *size)).astype(np.float32)
    data *= np.array([1, 10, 100, 1000], dtype=np.float32)[:n, None, None]
    return data


def test_zscore_hand_computed():
    data = np.array([1, 2, 3, 4], dtype=np.float32).reshape(1, 2, 2)
    norm = Normalizer.fit(data)
    expected = (np.array([1, 2, 3, 4]) - 2.5) / math.sqrt(1.25)
    np.testing.assert_allclose(norm(data).ravel(), expected, rtol=1e-6)
    assert norm.mean == [2.5] and norm.std == [pytest.approx(math.sqrt(1.25))]


def test_full_pipeline_matches_manual_computation(rng):
    data = _image(rng)
    data[1, 3, 4] = 5000.0  # a hot pixel
    norm = Normalizer.fit(data, hot_pixel_threshold=50, arcsinh_cofactor=5, clip_percentile=99)
    out = norm(data)
    from napari_imc_vae.preprocessing import clip_percentile, filter_hot_pixels

    x = np.arcsinh(filter_hot_pixels(data, 50).astype(np.float64) / 5)
    x = clip_percentile(x, 99).astype(np.float64)
    expected = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-4)


def test_steps_are_optional():
    data = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    norm = Normalizer.fit(data, zscore=False)
    np.testing.assert_array_equal(norm(data), data)
    assert norm.params == NormalizationParams(zscore=False)
    np.testing.assert_allclose(Normalizer.fit(data, arcsinh_cofactor=1, zscore=False)(data),
                               np.arcsinh(data), rtol=1e-6)


def test_constant_and_all_zero_channels_map_to_zero(rng):
    data = _image(rng, n=3)
    data[1] = 0.0
    data[2] = 7.0
    norm = Normalizer.fit(data, arcsinh_cofactor=5, clip_percentile=99.9)
    out = norm(data)
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out[1:], 0)
    assert norm.constant_channels == ["ch1", "ch2"]
    assert norm.constant == [False, True, True]
    # the inverse gives the constant back
    np.testing.assert_allclose(norm.inverse(out)[1:], data[1:], rtol=1e-5)


def test_channel_with_no_finite_pixel():
    data = np.ones((2, 3, 3), dtype=np.float32)
    data[0] = np.arange(9).reshape(3, 3)
    data[1] = np.nan
    norm = Normalizer.fit(data, clip_percentile=99)
    assert norm.constant_channels == ["ch1"] and norm.n_finite == [9, 0]
    assert norm.clip_high[1] is None
    assert np.isnan(norm(data)[1]).all()
    json.dumps(norm.to_dict(), allow_nan=False)


def test_nan_masked_from_statistics_and_kept_in_output():
    data = np.array([1, 2, 3, 4, np.nan, np.inf], dtype=np.float32).reshape(1, 2, 3)
    norm = Normalizer.fit(data, clip_percentile=100)
    assert norm.mean == [2.5] and norm.n_finite == [4]
    out = norm(data)
    assert math.isnan(out[0, 1, 1])
    # +Inf is clipped to the limit (the largest finite value at p100)
    assert out[0, 1, 2] == pytest.approx(out[0, 1, 0])
    assert np.isfinite(np.delete(out.ravel(), 4)).all()


def test_round_trip_normalize_inverse(rng):
    data = _image(rng)
    data[0, 0, :3] = np.nan
    norm = Normalizer.fit(data, arcsinh_cofactor=5)
    back = norm.inverse(norm(data))
    np.testing.assert_allclose(back, data, rtol=1e-4, atol=1e-3)
    assert np.isnan(back[0, 0, :3]).all()


def test_pooled_fit_equals_fit_on_concatenation(rng):
    a, b = _image(rng), _image(rng, size=(11, 7))
    b[2, 0, 0] = np.nan
    pooled = Normalizer.fit([a, b], arcsinh_cofactor=5, clip_percentile=99.5)
    joined = np.concatenate([a.reshape(4, 1, -1), b.reshape(4, 1, -1)], axis=2)
    single = Normalizer.fit(joined, arcsinh_cofactor=5, clip_percentile=99.5)
    np.testing.assert_allclose(pooled.mean, single.mean, rtol=1e-12)
    np.testing.assert_allclose(pooled.std, single.std, rtol=1e-12)
    np.testing.assert_allclose(pooled.clip_high, single.clip_high, rtol=1e-12)
    total = a[0].size + b[0].size
    assert pooled.n_finite == [total, total, total - 1, total]


def test_pooled_imc_images_are_matched_by_channel(rng):
    a, b = _image(rng), _image(rng)
    names, metals = ["CK5", "Lam", "YBX1", "H3"], ["Pr141", "Sm147", "Eu153", "Yb172"]
    img_a = ImcImage(a, names, metals=metals)
    order = [2, 0, 3, 1]
    img_b = ImcImage(b[order], [names[i] for i in order], metals=[metals[i] for i in order])
    pooled = Normalizer.fit([img_a, img_b])
    reference = Normalizer.fit([a, b], channel_names=names)
    np.testing.assert_allclose(pooled.mean, reference.mean)
    assert pooled.channel_names == names and pooled.channel_keys == metals
    # applying to the reordered image returns the normalizer's channel order
    np.testing.assert_allclose(pooled(img_b), reference(b), atol=1e-6)
    # a missing channel is named by the identity the channels are matched by (the metal);
    # ChannelMismatchError is a ValueError
    other = ImcImage(a[:3], names[:3], metals=metals[:3])
    with pytest.raises(ValueError, match=r"missing Yb172; extra none .*expected 4 channels: Pr141"):
        pooled(other)


def test_extra_channels_are_left_out_and_named(rng):
    a, b = _image(rng), _image(rng)
    names, metals = ["CK5", "Lam", "YBX1", "H3"], ["Pr141", "Sm147", "Eu153", "Yb172"]
    img_a = ImcImage(a, names, metals=metals)
    # images[1] has a channel images[0] lacks, between the others: pooled fitting drops it
    extra = rng.gamma(2.0, 100.0, size=(1, *b.shape[1:])).astype(np.float32)
    wide = ImcImage(np.concatenate([b[:2], extra, b[2:]]), [*names[:2], "CD3", *names[2:]],
                    metals=[*metals[:2], "Gd155", *metals[2:]])
    pooled = Normalizer.fit([img_a, wide], arcsinh_cofactor=5)
    reference = Normalizer.fit([a, b], channel_names=names, arcsinh_cofactor=5)
    np.testing.assert_allclose(pooled.mean, reference.mean)
    np.testing.assert_allclose(pooled.std, reference.std)
    match = pooled.match_channels(wide)
    assert match.index == (0, 1, 3, 4) and match.ignored == ("CD3",)
    np.testing.assert_array_equal(match.take(wide.data), b)
    assert pooled.match_channels(img_a).take(a) is a  # already in order: no copy
    np.testing.assert_allclose(pooled(wide), reference(b), atol=1e-6)
    # the first image sets the panel: a later one that lacks a channel is named
    with pytest.raises(ChannelMismatchError, match=r"images\[1\]: .*missing Gd155; extra none"):
        Normalizer.fit([wide, img_a])


def test_to_dict_from_dict_round_trip_json_and_torch(rng):
    data = _image(rng)
    data[3] = 0
    norm = Normalizer.fit(data, hot_pixel_threshold=50, arcsinh_cofactor=5, clip_percentile=99.9)
    d = norm.to_dict()
    assert d["format_version"] == 1
    text = json.dumps(d, allow_nan=False)
    again = Normalizer.from_dict(json.loads(text))
    np.testing.assert_array_equal(again(data), norm(data))
    assert again.to_dict() == d

    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"normalizer": d}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["normalizer"]
    assert loaded == d
    np.testing.assert_array_equal(Normalizer.from_dict(loaded)(data), norm(data))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("channels"), r"missing keys \['channels'\]"),
        (lambda d: d.update(format="other"), "format must be"),
        (lambda d: d.update(format_version=99), "format_version must be an int from 1 to 1"),
        (lambda d: d["channels"].update(std=[1.0]), r"channels.std must have 2 entries .*got 1"),
        (lambda d: d["channels"]["std"].__setitem__(0, 0.0),
         r"channels.std\[0\] must be a finite number > 0"),
        (lambda d: d["channels"]["mean"].__setitem__(1, float("nan")), r"channels.mean\[1\]"),
        (lambda d: d["params"].update(arcsinh_cofactor=-1.0),
         "params: arcsinh_cofactor must be > 0"),
        (lambda d: d["params"].update(bogus=1), r"unknown keys \['bogus'\]"),
        (lambda d: d.update(channel_names=["a", "a"]), "unique"),
    ],
)
def test_from_dict_validation(mutate, match):
    d = Normalizer.fit(np.arange(8, dtype=np.float32).reshape(2, 2, 2)).to_dict()
    mutate(d)
    with pytest.raises(ValueError, match=match):
        Normalizer.from_dict(d)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"arcsinh_cofactor": 0}, r"arcsinh_cofactor must be > 0 .*got 0.0"),
        ({"arcsinh_cofactor": -5}, r"arcsinh_cofactor must be > 0 .*got -5.0"),
        ({"clip_percentile": 0}, r"clip_percentile must be in \(0, 100\] .*got 0.0"),
        ({"clip_percentile": 101}, r"clip_percentile must be in \(0, 100\] .*got 101.0"),
        ({"hot_pixel_threshold": -1}, r"hot_pixel_threshold must be >= 0 .*got -1.0"),
        ({"channel_names": ["a"]}, r"channel_names must have one name per channel \(2\), got 1"),
    ],
)
def test_fit_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Normalizer.fit(np.zeros((2, 3, 3), dtype=np.float32), **kwargs)


def test_wrong_channel_count_and_shapes():
    norm = Normalizer.fit(np.random.default_rng(1).random((3, 4, 4)))
    with pytest.raises(ValueError, match=r"data must have 3 channels .*got 2"):
        norm(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"normalized must have 3 channels .*got 4"):
        norm.inverse(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match=r"images\[1\] has 2 channels, expected 3"):
        Normalizer.fit([np.zeros((3, 2, 2)), np.zeros((2, 2, 2))])
    with pytest.raises(ValueError, match="non-empty sequence"):
        Normalizer.fit([])
    with pytest.raises(TypeError, match="zscore must be True or False"):
        Normalizer.fit(np.zeros((1, 2, 2)), zscore="yes")


def test_input_not_modified(rng):
    data = _image(rng)
    before = data.copy()
    norm = Normalizer.fit(data, hot_pixel_threshold=0, arcsinh_cofactor=1, clip_percentile=90)
    norm(data)
    np.testing.assert_array_equal(data, before)


# --- the streaming fit (cohorts larger than RAM) -------------------------------------------------


def _steinbock_images(imc_testdata):
    from napari_imc_vae.io import read_imc

    return [read_imc(f) for f in sorted((imc_testdata / "steinbock_img").glob("*.ome.tiff"))]


def test_streaming_fit_equals_fit_on_real_rois(imc_testdata):
    images = _steinbock_images(imc_testdata)
    params = dict(hot_pixel_threshold=50, arcsinh_cofactor=5)
    exact, streamed = Normalizer.fit(images, **params), fit_streaming(iter(images), **params)
    # without clipping the moments are exact: only float64 rounding differs
    np.testing.assert_allclose(streamed.mean, exact.mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(streamed.std, exact.std, rtol=1e-12)
    assert streamed.constant == exact.constant
    assert streamed.n_finite == exact.n_finite and streamed.channel_keys == exact.channel_keys


@pytest.mark.parametrize("params", [dict(hot_pixel_threshold=50, arcsinh_cofactor=5, clip_percentile=99.9),
                                    dict(arcsinh_cofactor=1, clip_percentile=95.0), dict(clip_percentile=99.0)])
def test_streaming_fit_clips_within_the_histogram_bound_on_real_rois(imc_testdata, params):
    images = _steinbock_images(imc_testdata)
    exact, streamed = Normalizer.fit(images, **params), fit_streaming(images, **params)
    hi, hi_exact = np.array(streamed.clip_high), np.array(exact.clip_high)
    assert (np.abs(hi - hi_exact) <= 2.0**-10 * np.abs(hi_exact)).all()  # the documented bound
    # the z-score moves by far less than the normalized noise (measured: 2e-5 of the std)
    std = np.array(exact.std)
    assert (np.abs(np.subtract(streamed.mean, exact.mean)) <= 1e-3 * std).all()
    np.testing.assert_allclose(streamed.std, exact.std, rtol=1e-3)
    assert streamed.constant == exact.constant


def test_histogram_percentile_is_exact_for_discrete_values_and_bounded_otherwise(rng):
    from napari_imc_vae.preprocessing.stats import LogHistogram

    counts = np.arcsinh(rng.poisson(rng.gamma(0.5, 20.0, 200_000)) / 5.0)  # arcsinh of integer counts
    continuous = np.concatenate([rng.lognormal(0, 2, 100_000), -rng.exponential(1.0, 1000), np.zeros(5000)])
    for values, exact_expected in ((counts, True), (continuous, False)):
        hist = LogHistogram()
        for part in np.array_split(values, 7):
            hist.add(part)
        ordered = np.sort(values)
        for q in (0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0):
            exact = np.percentile(values, q)
            j = int(np.floor(q / 100 * (values.size - 1)))
            scale = np.abs(ordered[j : j + 2]).max()
            if exact_expected:
                assert hist.percentile(q) == pytest.approx(exact, rel=1e-12, abs=1e-12)
            else:
                assert abs(hist.percentile(q) - exact) <= 2.0**-10 * scale + 2.0**-30


def test_streaming_fit_edge_cases_match_fit():
    data = np.stack([np.full((6, 5), 3.0), np.zeros((6, 5)), np.full((6, 5), np.nan),
                     np.arange(30.0).reshape(6, 5)]).astype(np.float32)
    data[3, 0, 0] = np.nan
    sparse = np.zeros((1, 40, 50), np.float32)
    sparse[0, 0, :3] = 9.0  # 0.15% non-zero: clipped at p99.9 it is constant
    for stack, params in ((data, {}), (data, dict(arcsinh_cofactor=5, clip_percentile=90)),
                          (sparse, dict(clip_percentile=99.0))):
        exact = Normalizer.fit([stack, stack[:, ::-1]], **params)
        streamed = fit_streaming([stack, stack[:, ::-1]], **params)
        assert streamed.constant == exact.constant and streamed.n_finite == exact.n_finite
        assert [v is None for v in streamed.clip_high] == [v is None for v in exact.clip_high]
        limits = [(s, e) for s, e in zip(streamed.clip_high, exact.clip_high) if e is not None]
        assert all(s == pytest.approx(e, rel=1e-9) for s, e in limits)
        np.testing.assert_allclose(streamed.mean, exact.mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(streamed(stack), exact(stack), rtol=1e-6, atol=1e-6)


def test_streaming_fit_matches_channels_by_name_and_refuses_bad_input(rng):
    a = ImcImage(_image(rng, 3), ["CD3", "CD8", "Ki67"], metals=["Nd143", "Sm152", "Er168"])
    b = ImcImage(a.data[::-1].copy(), ["Ki67", "CD8", "CD3"], metals=["Er168", "Sm152", "Nd143"])
    assert fit_streaming([a, b]).mean == pytest.approx(Normalizer.fit([a, a]).mean, rel=1e-12)
    with pytest.raises(ValueError, match="needs at least one image"):
        fit_streaming([])
    with pytest.raises(ValueError, match=r"images\[1\] has 2 channels, expected 3"):
        fit_streaming([a.data, a.data[:2]])
    c = ImcImage(a.data[:2].copy(), ["CD3", "CD8"], metals=["Nd143", "Sm152"])
    with pytest.raises(ChannelMismatchError, match=r"images\[1\]: .*missing Er168; "):
        fit_streaming([a, c])
