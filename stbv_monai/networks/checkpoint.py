"""Load official STCN checkpoints, ImageNet ResNet weights or our own into an :class:`STCN`.

Two formats are recognised by their key names:

* **STCN** (and ours): keys under ``key_encoder.``, ``value_encoder.``, ``key_proj.``, ``key_comp.``,
  ``decoder.``; loaded by name. A value-encoder ``conv1`` with fewer input channels than the
  model (4 in STCN's single-object checkpoints, 5 in ours) gets zero channels appended, as
  STCN's evaluation does.
* **ImageNet** (torchvision names ``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``): ``layer1``..``layer3``
  map onto an encoder (``layer1`` is the key encoder's ``res2``); ``layer4`` and ``fc`` are dropped
  (listed in ``dropped``). Each encoder receives the weights only when at least 90% of its
  mapped convolution weights fit (a ResNet-50 checkpoint fills the ResNet-50 key encoder, a
  ResNet-18 one the value encoder); the RGB ``conv1`` then gets zero mask channels in the
  value encoder. The value encoder's convolution biases (ImageNet ResNets have none) stay
  as initialised and are listed as missing.

Our own files also hold ``training_size``, the resolution the weights were trained at; files
without it (official STCN, older ones) keep the model's configured value and list it as missing.

Nothing is dropped silently: the returned :class:`LoadReport` lists loaded, missing,
unexpected, shape-mismatched, adapted and dropped keys, and a summary is logged. A
checkpoint for another architecture (STCN format: less than half of its tensors fit;
ImageNet format: no encoder fits) raises :class:`~stbv_monai.errors.InputError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from stbv_monai.errors import InputError
from stbv_monai.networks.stcn import TRAINING_SIZE_KEY

__all__ = ["LoadReport", "load_pretrained", "read_state_dict"]

logger = logging.getLogger(__name__)

STCN_PREFIXES = ("key_encoder.", "value_encoder.", "key_proj.", "key_comp.", "decoder.")
WRAPPER_KEYS = ("network", "state_dict", "model", "net", "prop_net")
STRIP_PREFIXES = ("module.", "network.", "model.", "_orig_mod.")
IMAGENET_STAGES = {"key_encoder": ("res2", "layer2", "layer3"), "value_encoder": ("layer1", "layer2", "layer3")}
ADAPTABLE = "value_encoder.conv1.weight"
MIN_FIT = 0.5
IMAGENET_FIT = 0.9


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    Attributes:
        source: the checkpoint path (or ``"<state_dict>"``).
        format: ``"stcn"`` or ``"imagenet"``.
        loaded: model keys that received a tensor.
        missing: model keys the checkpoint did not provide (they keep their values).
        unexpected: checkpoint keys with no place in the model.
        mismatched: ``(model key, checkpoint shape, model shape)`` for same-named tensors that do not fit.
        adapted: model keys filled after zero-padding input channels.
        dropped: checkpoint keys deliberately unused (ImageNet ``layer4``, ``fc``).
    """

    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line of counts."""
        return (
            f"{self.source} ({self.format}): loaded {len(self.loaded)}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, mismatched {len(self.mismatched)}, "
            f"adapted {len(self.adapted)}, dropped {len(self.dropped)}"
        )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` state dict.

    Accepts a plain state dict or one nested under ``network``/``state_dict``/``model``/``net``;
    strips ``module.`` (DDP) and similar wrapper prefixes.

    Raises:
        InputError: missing file, not a PyTorch checkpoint, or no state dict inside.
    """
    if not os.path.isfile(path):
        raise InputError(path, "checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types (UnpicklingError, IndexError, RuntimeError ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in first:  # torch suggests weights_only=False, which would run arbitrary code
            first = "it holds objects other than tensors; save the network's state_dict() instead"
        raise InputError(path, f"not a PyTorch checkpoint (torch.load failed: {first[:200]})") from err
    return _flatten_state_dict(obj, str(path))


def _flatten_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping) and _is_state_dict(obj[key]):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise InputError(source, f"not a PyTorch checkpoint with a state dict (found {keys})")
    sd = {str(k): v for k, v in obj.items()}
    for prefix in STRIP_PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_pretrained(
    model: nn.Module, path: str | os.PathLike | Mapping[str, torch.Tensor], strict: bool = False,
    skip: Collection[str] = (),
) -> LoadReport:
    """Load STCN, ImageNet-ResNet or own weights into ``model`` (an STCN or a module wrapping one as ``.network``).

    Args:
        model: the network to fill in place.
        path: checkpoint file (``torch.load(weights_only=True)``), or a state dict.
        strict: raise unless every model key is loaded and every checkpoint key is used
            (ImageNet ``layer4``/``fc`` and ``num_batches_tracked`` excepted).
        skip: checkpoint keys to leave unused (listed as dropped), e.g. ``training_size`` when
            the weights initialise a network trained at its own resolution.

    Returns:
        a :class:`LoadReport`.

    Raises:
        InputError: not a checkpoint; a checkpoint for another architecture (STCN format: less
            than half of its tensors fit; ImageNet format: no encoder fits; the message lists
            the first mismatched and unexpected keys and their counts); with ``strict``, any
            missing, unexpected or mismatched key.
    """
    target = model.network if isinstance(getattr(model, "network", None), nn.Module) else model
    if isinstance(path, Mapping):
        source, ckpt = "<state_dict>", _flatten_state_dict(path, "<state_dict>")
    else:
        source, ckpt = str(path), read_state_dict(path)
    skipped = [k for k in ckpt if k in set(skip)]
    ckpt = {k: v for k, v in ckpt.items() if k not in skipped}
    own = target.state_dict()
    if any(k.startswith(STCN_PREFIXES) for k in ckpt) or not _looks_imagenet(ckpt):
        report, tensors = _match_by_name(ckpt, own, LoadReport(source, "stcn"))
        considered = [k for k in ckpt if not k.endswith("num_batches_tracked")]
        used = sum(1 for k in considered if k in tensors)
        fits = used >= MIN_FIT * len(considered)
    else:
        report, tensors = _match_imagenet(ckpt, own, LoadReport(source, "imagenet"))
        considered = [k for k in ckpt if k not in report.dropped]
        used = len(considered) - len(report.unexpected)
        fits = bool(tensors)
    if not fits:
        raise InputError(source, _mismatch_message(report, used, len(considered)))
    report.missing = [k for k in own if k not in tensors]
    report.dropped.extend(skipped)
    if strict:
        _check_strict(report)
    target.load_state_dict(tensors, strict=False)
    _log_report(report)
    return report


def _looks_imagenet(ckpt: Mapping[str, torch.Tensor]) -> bool:
    return "conv1.weight" in ckpt and any(k.startswith("layer1.") for k in ckpt)


def _fit(name: str, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor | None:
    """``src`` shaped for ``dst`` (zero-padding input channels of the value-encoder conv1), or None."""
    if src.shape == dst.shape:
        return src.to(dst.dtype)
    if name == ADAPTABLE and src.dim() == 4 and src.shape[0] == dst.shape[0] and src.shape[2:] == dst.shape[2:]:
        extra = dst.shape[1] - src.shape[1]
        if extra > 0:
            pad = torch.zeros(src.shape[0], extra, *src.shape[2:], dtype=dst.dtype)
            return torch.cat([src.to(dst.dtype), pad], dim=1)
    return None


def _match_by_name(
    ckpt: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], report: LoadReport
) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    tensors: dict[str, torch.Tensor] = {}
    for name, value in ckpt.items():
        if name not in own:
            report.unexpected.append(name)
            continue
        if name == TRAINING_SIZE_KEY and int(value.min()) <= 0:
            continue  # "not recorded": keep the model's own (configured) value
        fitted = _fit(name, value, own[name])
        if fitted is None:
            report.mismatched.append((name, tuple(value.shape), tuple(own[name].shape)))
            continue
        tensors[name] = fitted
        report.loaded.append(name)
        if fitted.shape != value.shape:
            report.adapted.append(name)
    return report, tensors


def _imagenet_name(src: str, encoder: str) -> str | None:
    stem, _, rest = src.partition(".")
    if stem in ("conv1", "bn1"):
        return f"{encoder}.{src}"
    if stem in ("layer1", "layer2", "layer3"):
        return f"{encoder}.{IMAGENET_STAGES[encoder][int(stem[-1]) - 1]}.{rest}"
    return None


def _match_imagenet(
    ckpt: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], report: LoadReport
) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    report.dropped = [k for k in ckpt if k.split(".")[0] in ("layer4", "fc")]
    tensors: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    rejected: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    for encoder in IMAGENET_STAGES:
        pairs = [(s, _imagenet_name(s, encoder)) for s in ckpt if s not in report.dropped]
        fitted = {d: (s, _fit(d, ckpt[s], own[d])) for s, d in pairs if d is not None and d in own}
        bad = [(d, tuple(ckpt[s].shape), tuple(own[d].shape)) for d, (s, t) in fitted.items() if t is None]
        weights = [d for d, (s, _) in fitted.items() if ckpt[s].dim() >= 2]
        n_bad_weights = sum(1 for d, _, _ in bad if d in weights)
        if not weights or n_bad_weights > (1.0 - IMAGENET_FIT) * len(weights):
            rejected.extend(bad)
            continue
        report.mismatched.extend(bad)
        for dst, (src, tensor) in fitted.items():
            if tensor is not None:
                tensors[dst] = tensor
                used.add(src)
                report.loaded.append(dst)
                if tensor.shape != ckpt[src].shape:
                    report.adapted.append(dst)
    report.unexpected = [k for k in ckpt if k not in used and k not in report.dropped]
    if not tensors:
        report.mismatched = rejected
    return report, tensors


def _mismatch_message(report: LoadReport, used: int, considered: int) -> str:
    shown = ", ".join(f"{k} {tuple(a)} vs model {tuple(b)}" for k, a, b in report.mismatched[:5])
    unexpected = ", ".join(report.unexpected[:5])
    return (
        f"checkpoint does not fit this network ({report.format} format: only {used} of {considered} tensors fit); "
        f"{len(report.mismatched)} shape-mismatched key(s){': ' + shown if shown else ''}"
        f"{' ...' if len(report.mismatched) > 5 else ''}; {len(report.unexpected)} unexpected key(s)"
        f"{': ' + unexpected if unexpected else ''}{' ...' if len(report.unexpected) > 5 else ''}. "
        "Is it a checkpoint for another architecture or network size?"
    )


def _check_strict(report: LoadReport) -> None:
    missing = [k for k in report.missing if not k.endswith("num_batches_tracked") and k != TRAINING_SIZE_KEY]
    if missing or report.unexpected or report.mismatched:
        raise InputError(
            report.source,
            f"strict loading failed: missing {missing[:5]} ({len(missing)}), unexpected "
            f"{report.unexpected[:5]} ({len(report.unexpected)}), mismatched "
            f"{[m[0] for m in report.mismatched[:5]]} ({len(report.mismatched)})",
        )


def _log_report(report: LoadReport) -> None:
    logger.info("load_pretrained %s", report.summary())
    for title, names in (
        ("missing (kept as initialised)", report.missing),
        ("unexpected (ignored)", report.unexpected),
        ("shape-mismatched (ignored)", [f"{k} {a} vs {b}" for k, a, b in report.mismatched]),
        ("adapted (zero-padded input channels)", report.adapted),
        ("dropped (unused)", report.dropped),
    ):
        if names:
            expected = report.format == "imagenet" and title.startswith("missing")  # decoder etc.
            expected = expected or names == [TRAINING_SIZE_KEY]  # not recorded: the caller says what it uses
            quiet = expected or title.startswith(("adapted", "dropped"))
            level = logging.INFO if quiet else logging.WARNING
            logger.log(level, "%s: %d key(s): %s", title, len(names), ", ".join(names))
