"""The human side of a zoo package: documentation page (with its Validation section), cover, citation."""

from __future__ import annotations

import io

import numpy as np

from napari_imc_vae import __version__

__all__ = ["TAGS", "citation_cff", "citation_entries", "cover_png", "documentation"]

TAGS = ["imaging-mass-cytometry", "imc", "multiplexed-imaging", "variational-autoencoder", "vae",
        "reconstruction", "anomaly-detection", "2d", "pytorch", "napari"]
_SOFTWARE = "napari-imc-vae: a permutation-invariant patch VAE for Imaging Mass Cytometry, in napari and headless"
_DATA_CITATION = ("Eling N., Bodenmiller Lab. IMC test data (210308_ImcTestData), "
                  "https://github.com/BodenmillerGroup/TestData")


def citation_entries() -> list[dict]:
    """The rdf's ``cite``: the software and the VAE."""
    return [
        {"text": f"napari-imc-vae developers. {_SOFTWARE} (version {__version__}).",
         "url": "https://github.com/napari-imc-vae/napari-imc-vae"},
        {"text": "Kingma D. P., Welling M. Auto-Encoding Variational Bayes. ICLR 2014.",
         "doi": "10.48550/arXiv.1312.6114"},
    ]


def citation_cff(model_name: str, authors: list[str], license: str) -> str:
    """A CITATION.cff for the model (the authors given at export), citing the software it was made with."""
    lines = ["cff-version: 1.2.0", 'message: "If you use this model, please cite it as below."',
             f'title: "{model_name}"', "type: software", "authors:"]
    lines += [f'  - name: "{a}"' for a in authors]
    lines += [f"license: {license}", "references:", "  - type: software", f'    title: "{_SOFTWARE}"',
              f'    version: "{__version__}"', "    authors:", '      - name: "napari-imc-vae developers"', ""]
    return "\n".join(lines)


def _display(x: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Counts (3, Y, X) → uint8 on arcsinh scale up to each channel's ``top`` (hot pixels would flatten min–max)."""
    scaled = np.arcsinh(np.clip(np.nan_to_num(x), 0, None)) / np.maximum(np.arcsinh(top), 1e-6)[:, None, None]
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def cover_png(raw: np.ndarray, recon: np.ndarray, names: list[str], side: int = 256) -> bytes:
    """A 2:1 cover: the test crop (left) and its reconstruction (right), the three markers with most signal as RGB.

    Parameters
    ----------
    raw, recon : ndarray of shape (C, Y, X)
        Counts.
    """
    from PIL import Image, ImageDraw

    strength = np.nanmean(np.arcsinh(np.clip(raw, 0, None)), axis=(1, 2))
    picked = list(np.argsort(-strength)[:3])
    while len(picked) < 3:  # fewer than three markers: the missing colours stay black
        picked.append(None)
    planes = [np.zeros_like(raw[0]) if c is None else raw[c] for c in picked]
    rplanes = [np.zeros_like(recon[0]) if c is None else recon[c] for c in picked]
    top = np.array([np.nanpercentile(p, 99.5) if p.any() else 1.0 for p in planes])
    halves = [Image.fromarray(_display(np.stack(p), top).transpose(1, 2, 0), "RGB").resize((side, side), Image.NEAREST)
              for p in (planes, rplanes)]
    cover = Image.new("RGB", (2 * side, side))
    cover.paste(halves[0], (0, 0))
    cover.paste(halves[1], (side, 0))
    draw = ImageDraw.Draw(cover)
    legend = " / ".join(names[c] for c in picked if c is not None)
    draw.text((4, 4), "image", fill=(255, 255, 255))
    draw.text((side + 4, 4), "reconstruction", fill=(255, 255, 255))
    draw.text((4, side - 14), f"R G B: {legend}"[:80], fill=(255, 255, 255))
    out = io.BytesIO()
    cover.save(out, format="PNG")
    return out.getvalue()


def _quality_block(trained, sample) -> str:
    from napari_imc_vae.engine.apply.use_case import assess_image

    try:
        report, quality = assess_image(trained, sample)
    except ValueError as e:  # e.g. an image without signal: say so rather than fail the export
        return f"No quality report on the sample image: {e}"
    if report is None:
        return f"No quality report on the sample image: {quality.get('reason')}"
    return (f"On {quality['n_patches']} patches of {quality['patch_size']} px (stride {quality['stride']}) of "
            f"the sample image, against {quality.get('baseline')}:\n\n```\n"
            f"{report.format_text('patches of the sample image')}\n```")


def _training_lines(trained) -> list[str]:
    info = trained.baseline_info or {}
    lines = [f"- Trained for {trained.step} steps ({trained.train_config.batch_size} patches a step) on "
             f"{len(trained.channel_names)} markers."]
    if info.get("images"):
        shown = info["images"] if isinstance(info["images"], list) else [info["images"]]
        lines.append(f"- Training images: {', '.join(str(i) for i in shown[:12])}"
                     + (f" and {len(shown) - 12} more" if len(shown) > 12 else ""))
    if trained.baseline_source:
        lines.append(f"- Baseline: {trained.baseline_source}.")
    if trained.validation_history:
        last = trained.validation_history[-1]
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, (int, float)))
        lines.append(f"- Last validation during training: {shown}.")
    return lines


def documentation(trained, sample, model_name: str, crop: tuple[int, int, int, int], kwargs: dict) -> str:
    """The package's README.md: what the model does, how to run it, and a Validation section."""
    from napari_imc_vae.engine.apply.use_case import steinbock_names

    norm, cfg = trained.normalizer, trained.model.config
    y0, x0, h, w = crop
    rows = ["| channel | mean | std | clip | constant |", "| --- | --- | --- | --- | --- |"]
    for i, name in enumerate(steinbock_names(trained)):
        clip = "—" if norm.clip_high[i] is None else f"{norm.clip_high[i]:.4g}"
        constant = "yes" if norm.constant[i] else ""
        rows.append(f"| {name} | {norm.mean[i]:.4g} | {norm.std[i]:.4g} | {clip} | {constant} |")
    return "\n".join([
        f"# {model_name}",
        "",
        f"A permutation-invariant patch VAE for Imaging Mass Cytometry, exported by napari-imc-vae {__version__}. "
        f"It encodes every {cfg.patch_size}×{cfg.patch_size} px patch of a {cfg.in_channels}-marker image into "
        f"{cfg.latent_dim} numbers that do not change when the patch is rotated or flipped, and rebuilds the "
        f"patch from them. Where the reconstruction misses the measured counts there is something the model "
        f"has not learned as ordinary tissue: artefacts, staining problems, rare cells.",
        "",
        "## Inputs and outputs",
        "",
        f"- `raw`: raw counts, (batch, channel, y, x), channels in the order of the rdf (metal_target), y and x "
        f"multiples of {kwargs['stride']} px, at least {cfg.patch_size} px.",
        "- `reconstruction`: the model's reconstruction in counts, never negative, same shape.",
        f"- `latent`: the posterior mean of the tile centred on every {kwargs['stride']}th pixel: "
        f"(batch, {cfg.latent_dim}, y/{kwargs['stride']}, x/{kwargs['stride']}).",
        "",
        "The normalization runs inside the model (the spec has no arcsinh): "
        f"{norm.params.describe()}, with the per-channel statistics below. Tiles of {cfg.patch_size} px at stride "
        f"{kwargs['stride']} px with reflected borders are blended with a Hann window; the latent is the posterior "
        "mean, so the output is deterministic.",
        "",
        "In napari-imc-vae, open this zip wherever a model file is asked for (`napari-imc-vae reconstruct "
        "model.zip image.ome.tiff -o out/`, the Reconstruct widget): it gives the same results as the model file.",
        "",
        "## Validation",
        "",
        "### Training data",
        "",
        *_training_lines(trained),
        "",
        "### Quality against its baseline",
        "",
        _quality_block(trained, sample),
        "",
        f"The test tensors are the {h}×{w} px crop at y={y0}, x={x0} of `{sample.name}` (the crop with the most "
        f"signal); the cover shows it beside its reconstruction.",
        "",
        "### Normalization",
        "",
        f"{norm.params.describe()}; statistics in arcsinh units, fitted on the training data:",
        "",
        *rows,
        "",
        "## Limitations",
        "",
        "- Use it on images of the same panel (the channels are matched by metal) acquired like the training "
        "data; reconstruction error on other tissue or another instrument set-up mostly measures that difference.",
        "- Raw IMC pixels carry shot noise that no bottleneck model reproduces: compare with the PCA baseline, "
        "not with an absolute R².",
        "",
    ])
