"""The tensors of a model file: the weights and the optimizer state, against the model's parameters.

No scheduler state is stored: the learning rate is a function of the step and the train
config (:func:`~napari_imc_vae.engine.training.trainer.lr_factor`), so ``step`` is all a resumed run needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from napari_imc_vae.engine.model_file.schema.fields import MAX_STEP, MAX_TEXT, SchemaError, check_dict, check_number, show

__all__ = ["check_dense", "check_optimizer_state", "check_state_dict", "expected_parameters"]


def expected_parameters(model: torch.nn.Module) -> tuple[dict[str, tuple[torch.Size, torch.dtype]], list[torch.Size]]:
    """State-dict shapes and dtypes of a (meta-device) model, and its parameters' shapes in order."""
    state = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    return state, [p.shape for p in model.parameters()]


def check_dense(field: str, t, shape, dtype) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise SchemaError(field, f"must be a tensor, got {show(t)}")
    if t.layout != torch.strided or t.is_quantized:
        raise SchemaError(field, f"must be a dense tensor, got a {t.layout} tensor")
    if t.dtype != dtype:
        raise SchemaError(field, f"must be a {dtype} tensor, got {t.dtype}")
    if tuple(t.shape) != tuple(shape):
        raise SchemaError(field, f"must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if not t.is_contiguous():
        # a crafted stride (0, say) passes the shape check; fused kernels assume contiguous memory
        raise SchemaError(field, f"must be a contiguous tensor, got strides {t.stride()}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise SchemaError(field, "holds NaN or Inf values")
    return t


def check_state_dict(value, expected: Mapping[str, tuple[torch.Size, torch.dtype]]) -> None:
    """The weights: exactly the model's tensors, each of its shape and dtype, all finite."""
    value = check_dict("state_dict", value)
    missing = [k for k in expected if k not in value]
    extra = [str(k) for k in value if k not in expected]
    if missing or extra:
        raise SchemaError("state_dict", f"does not fit the model_config: missing {missing[:4]}, "
                                        f"unexpected {extra[:4]}")
    for key, (shape, dtype) in expected.items():
        check_dense(f"state_dict.{key}", value[key], shape, dtype)


_GROUP_FLAGS = ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")
_GROUP_FLAGS_OR_NONE = ("foreach", "fused")


def check_optimizer_state(value, param_shapes: Sequence[torch.Size]) -> None:
    """AdamW's state dict against the model's parameters: one group holding every parameter,
    moments of each parameter's shape (a wrong shape crashes the fused kernel), finite values.

    Raises
    ------
    SchemaError
        Naming ``optimizer_state.…`` down to the entry and tensor.
    """
    if value is None:
        return
    value = check_dict("optimizer_state", value)
    if set(value) != {"state", "param_groups"}:
        raise SchemaError("optimizer_state", f"must have the keys 'state' and 'param_groups', "
                                             f"got {sorted(map(str, value))}")
    groups = value["param_groups"]
    if not isinstance(groups, list) or len(groups) != 1:
        raise SchemaError("optimizer_state.param_groups", f"must be a list of one group, got {show(groups)}")
    group = check_dict("optimizer_state.param_groups[0]", groups[0])
    where = "optimizer_state.param_groups[0]"
    n = len(param_shapes)
    if group.get("params") != list(range(n)):
        raise SchemaError(f"{where}.params", f"must list the model's {n} parameters 0 … {n - 1}, "
                                             f"got {show(group.get('params'))}")
    for key in ("lr", "betas", "eps", "weight_decay"):
        if key not in group:
            raise SchemaError(f"{where}.{key}", "is missing")
    check_number(f"{where}.lr", group["lr"], 0.0, 10.0)
    check_number(f"{where}.eps", group["eps"], 0.0, 1.0, low_open=True)
    check_number(f"{where}.weight_decay", group["weight_decay"], 0.0, 100.0)
    betas = group["betas"]
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise SchemaError(f"{where}.betas", f"must be two numbers in [0, 1), got {show(betas)}")
    for i, beta in enumerate(betas):
        check_number(f"{where}.betas[{i}]", beta, 0.0, 0.999999)
    for key, v in group.items():
        if key in ("params", "lr", "betas", "eps", "weight_decay"):
            continue
        ok = (isinstance(v, bool) if key in _GROUP_FLAGS else v is None or isinstance(v, bool)
              if key in _GROUP_FLAGS_OR_NONE else v is None or isinstance(v, (bool, int, float, str)))
        if not ok or (isinstance(v, str) and len(v) > MAX_TEXT):
            raise SchemaError(f"{where}.{key}", f"must be {'True or False' if key in _GROUP_FLAGS else 'a plain value'}, "
                                                f"got {show(v)}")
    state = check_dict("optimizer_state.state", value["state"])
    moments = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group.get("amsgrad") else ())
    for index, entry in state.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise SchemaError("optimizer_state.state", f"has an entry for parameter {show(index)}; "
                                                       f"the model has parameters 0 … {n - 1}")
        where = f"optimizer_state.state[{index}]"
        entry = check_dict(where, entry)
        if set(entry) != {"step", *moments}:
            raise SchemaError(where, f"must have the keys {['step', *moments]}, got {sorted(map(str, entry))}")
        step = entry["step"]
        if isinstance(step, torch.Tensor):
            if step.numel() != 1 or not step.is_floating_point() or not bool(torch.isfinite(step).all()) \
                    or float(step) < 0:
                raise SchemaError(f"{where}.step", f"must be one finite count >= 0, got {show(step)}")
        else:
            check_number(f"{where}.step", step, 0.0, float(MAX_STEP))
        for key in moments:
            t = check_dense(f"{where}.{key}", entry[key], param_shapes[index], torch.float32)
            if key != "exp_avg" and bool((t < 0).any()):
                raise SchemaError(f"{where}.{key}", "holds negative values (a mean of squares is >= 0)")
