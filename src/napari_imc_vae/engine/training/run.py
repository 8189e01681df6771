"""One training run, the building block of the training use case
(:func:`~napari_imc_vae.engine.training.use_case.train_model`).

:class:`TrainingRun` checks the images (:func:`check_image_content`), fits the normalizer in one
streaming pass (or reuses a resumed model's), builds (or resumes) the model and its sampler, and
trains with a callback and ``stop()``; at the end it fits what the model file carries besides the
weights: the PCA baseline (:func:`fit_training_baseline`), the tissue motifs
(:func:`fit_training_motifs`) and the rate calibration. Applying a model to an image is
:mod:`napari_imc_vae.engine.apply` (:func:`~napari_imc_vae.engine.apply.inference.apply_model`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

import numpy as np

from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.data.content import ImageContentError, check_image_content
from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.data.cohort import CohortOptions, ImageStream, build_sampler
from napari_imc_vae.engine.defaults import BASELINE_FIT_PATCHES, DEFAULT_MOTIFS
from napari_imc_vae.engine.device import resolve_device
from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
from napari_imc_vae.engine.apply.rate_calibration import measure_rate_calibration
from napari_imc_vae.engine.training.trainer import Trainer, TrainConfig, TrainProgress
from napari_imc_vae.io import ImcImage
from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION, NormalizationParams
from napari_imc_vae.preprocessing.streaming import StreamingFit


def fit_training_baseline(patches, latent_dim: int, image_names: Sequence[str]):
    """PCA-k (k = latent dims) and the mean patch on training patches, for the model file.

    Patches with a non-finite value are left out.

    Returns
    -------
    baseline : PCABaseline or None
        None when no finite patch is left.
    info : dict
        ``fitted_on`` (in words), ``n_patches``, ``images``, ``k``.
    """
    import torch

    from napari_imc_vae.engine.quality.baselines import PCABaseline

    x = torch.as_tensor(patches).detach().to("cpu", torch.float32)
    x = x[torch.isfinite(x).flatten(1).all(dim=1)]
    if len(x) == 0:
        return None, {}
    k = int(min(latent_dim, len(x), x[0].numel()))
    baseline = PCABaseline.fit(x, k)
    names = list(image_names)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    info = {"fitted_on": f"PCA-{k} and the mean patch fitted on {len(x)} training patches of {shown} "
                         f"at the end of training (the model's own training data)",
            "n_patches": int(len(x)), "images": names, "k": k}
    return baseline, info


def fit_training_motifs(model, patches, *, k: int | None = None, seed: int = 0, batch_size: int = 1024):
    """Tissue motifs fitted on the latent vectors of training patches, for the model file.

    Stored with the model and applied unchanged to every image, so that motif 3 means the same
    kind of tissue in every ROI of a cohort. Patches with a non-finite value are left out.

    Returns
    -------
    MotifModel or None
        None when no finite patch is left.
    """
    import torch

    from napari_imc_vae.engine.apply.motifs import MotifModel

    x = torch.as_tensor(patches).detach()
    x = x[torch.isfinite(x).flatten(1).all(dim=1)]
    if len(x) == 0:
        return None
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mu = torch.cat([model.reconstruct(x[i : i + batch_size].to(device))[1].float().cpu()
                            for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
    return MotifModel.fit(mu.numpy(), DEFAULT_MOTIFS if k is None else k, seed=seed)


def _as_images(images: ImcImage | Sequence[ImcImage] | ImageStream) -> list[ImcImage] | ImageStream:
    if isinstance(images, ImcImage):
        return [images]
    if isinstance(images, ImageStream):  # read file by file, each time it is iterated
        return images
    images = list(images)
    if not images or not all(isinstance(im, ImcImage) for im in images):
        raise TypeError(f"images must be an ImcImage or a non-empty list of them, got {images!r:.80}")
    return images


class TrainingRun:
    """One training run: fit (or reuse) the normalizer, build (or resume) the model, train.

    Parameters
    ----------
    images : ImcImage, list of ImcImage or ImageStream
        Raw images of one panel (channels matched by metal/name across images). Iterated twice,
        one image at a time (fit, then normalize): the normalizer is fitted in one streaming pass.
    normalization : NormalizationParams, optional
        Ignored when resuming (the model's own normalizer is reused).
    model_config : dict, optional
        ModelConfig fields other than ``in_channels`` (patch_size, latent_dim, width, depth...).
    critic_config, train_config : optional
    resume : TrainedModel, optional
        Continue this model: same normalizer, weights, optimizer state and step count.
    data : CohortOptions, optional
        How the normalized pixels are held: in RAM up to a size, else a disk cache and a bounded
        pool (default :meth:`CohortOptions.from_env`). ``images`` may be an
        :class:`~napari_imc_vae.engine.data.cohort.ImageStream` that reads files one at a time.
    """

    def __init__(
        self,
        images: ImcImage | Sequence[ImcImage],
        *,
        normalization: NormalizationParams | None = None,
        model_config: dict | None = None,
        critic_config: CriticConfig | None = None,
        train_config: TrainConfig | None = None,
        resume: TrainedModel | None = None,
        data: CohortOptions | None = None,
    ):
        images = _as_images(images)
        self.train_config = train_config or TrainConfig()
        self.critic_config = critic_config or (resume.critic_config if resume else CriticConfig())
        self.device = resolve_device(self.train_config.device)
        params = normalization or DEFAULT_NORMALIZATION
        fit = StreamingFit(**asdict(params)) if resume is None else None
        self.image_names = []
        for im in images:  # one pass, one image at a time: a stream reads each file here
            check_image_content(im)  # before any work: an empty or constant image trains a constant loss
            self.image_names.append(im.name)
            if fit is None:
                resume.match_channels(im)  # fail early, naming missing channels; extra ones are left out
            else:
                fit.add(im)
        im = None  # a streamed image must not stay alive through the second pass
        if not self.image_names:
            raise ValueError("no images to train on")
        if resume is not None:
            self.normalizer = resume.normalizer
            config = resume.model.config
            if model_config:
                changed = {k: v for k, v in model_config.items() if getattr(config, k) != v}
                if changed:
                    raise ValueError(f"cannot change the architecture when resuming: {changed}")
            self.model = resume.model
        else:
            self.normalizer = fit.result()
            options = dict(model_config or {})
            options.pop("in_channels", None)
            config = ModelConfig(in_channels=self.normalizer.n_channels, **options)
            import torch

            torch.manual_seed(self.train_config.seed)
            self.model = PatchVAE(config)
        self.resume = resume
        # in RAM for small inputs, else a disk cache and a bounded pool (cohort.build_sampler)
        self.sampler = build_sampler(images, self.normalizer, config.patch_size,
                                     val_fraction=self.train_config.val_fraction, device=self.device,
                                     seed=self.train_config.seed, options=data)
        self.trainer = Trainer(
            self.model,
            self.sampler,
            self.critic_config,
            replace(self.train_config),
            step=resume.step if resume else 0,
            optimizer_state=resume.optimizer_state if resume else None,
            history=resume.history if resume else None,
        )

    def stop(self) -> None:
        """End training after the current step; :meth:`run` then returns the model so far."""
        self.trainer.stop()

    #: What :meth:`use_train_config` may change: the run's length and validation interval.
    PLANNED_FIELDS = ("steps", "time_limit_s", "val_every")

    def use_train_config(self, config: TrainConfig) -> None:
        """Train with ``config`` instead, before :meth:`run`: the steps a budget bought, the
        validation interval of the run's length. The model file records it.

        Raises
        ------
        ValueError
            When ``config`` changes anything but :attr:`PLANNED_FIELDS` (the data and the
            trainer were built for the others).
        """
        changed = sorted(k for k, v in asdict(config).items()
                         if k not in self.PLANNED_FIELDS and getattr(self.train_config, k) != v)
        if changed:
            raise ValueError(f"use_train_config may change {', '.join(self.PLANNED_FIELDS)} only, "
                             f"got changes to {', '.join(changed)}")
        self.train_config = config
        self.trainer.config = replace(config)

    def run(self, on_progress: Callable[[TrainProgress], None] | None = None) -> tuple[TrainedModel, bool]:
        """Train; returns the trained model (best validation state) and whether it was stopped."""
        result = self.trainer.fit(on_progress)
        previous = self.resume.validation_history if self.resume else []
        patches = self.sampler.training_patches(BASELINE_FIT_PATCHES)
        baseline, info = fit_training_baseline(patches, self.model.config.latent_dim, self.image_names)
        motif_model = fit_training_motifs(result.model, patches, seed=self.train_config.seed)
        # the reconstruction in counts made unbiased in sum; measured again on every (resumed) run
        rate_calibration = measure_rate_calibration(result.model, self.normalizer, patches,
                                                    image_names=self.image_names, step=result.step)
        trained = TrainedModel(
            model=result.model,
            normalizer=self.normalizer,
            critic_config=self.critic_config,
            train_config=self.train_config,
            step=result.step,
            optimizer_state=self.trainer.optimizer.state_dict(),
            history=result.history,
            validation_history=list(previous) + result.validation_history,
            baseline=baseline,
            baseline_info=info,
            motif_model=motif_model,
            rate_calibration=rate_calibration,
        )
        return trained, result.stopped


__all__ = ["BASELINE_FIT_PATCHES", "DEFAULT_NORMALIZATION", "ImageContentError", "TrainingRun",
           "check_image_content", "fit_training_baseline", "fit_training_motifs", "PatchVAE"]
