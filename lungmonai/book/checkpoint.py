"""Import a checkpoint trained with the code of *Deep Learning with PyTorch* (part 2) as bundles.

A book checkpoint (``*.state``) is a dict with ``model_state`` (the network's state dict),
``optimizer_state``, ``epoch``, ``totalTrainingSamples_count`` and, in some, ``model_name``,
``optimizer_name``, ``sys_argv`` and ``time``; the published ones load with
``torch.load(weights_only=True)``. :func:`import_book_checkpoint` reads one, checks it is the
network the stage needs (every key, every shape), maps it onto this project's network and writes
a bundles folder the pipeline loads (``lungmonai analyze --bundles OUT``):

* ``OUT`` is a copy of the project's bundles (configs and docs, no weights) whose
  ``contract.json`` is set to the book's settings: each CT's own voxels (``grid_spacing_xyz``
  null), HU window [-1000, 1000], 32x48x48 crops, 3 context slices on each side, the book's
  segmentation network (:class:`lungmonai.book.segnet.BookSegUNet`) and the pipeline settings
  closest to the book's analysis (:data:`BOOK_PIPELINE`);
* ``OUT/<bundle>/models/model.pt`` holds a plain state dict;
* ``OUT/<bundle>/configs/metadata.json`` records the import under ``imported_from``: the source
  file and its sha256, the book's epoch and training samples, the book's preprocessing, and which
  of the pipeline's settings reproduce the book and which do not.

Stages: ``cls`` (the book's ``LunaModel`` nodule classifier, into ``nodule_cls``), ``malignancy``
(a ``LunaModel`` fine-tuned for malignancy, into ``nodule_malignancy``) and ``seg`` (the book's
``UNetWrapper``, into ``nodule_seg``). Importing the stages one after another into the same
``OUT`` fills one folder.

Two changes of form, neither of function:

* the classifier's head is called ``head_linear`` in the book and ``head`` in
  :class:`lungmonai.classification.LunaModel` (:func:`classifier_key_map` lists every key);
* the book's networks read HU clipped to [-1000, 1000]; the project's read them clipped and
  scaled to [-1, 1] (``x / 1000``). Both networks start with a batch norm, so its running
  statistics are rescaled (mean ``m / 1000``, variance ``(v + eps) / 1000**2 - eps``): in eval
  mode the imported network gives the book network's outputs on the project's inputs.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lungmonai.config import CONTRACT, contract, copy_configs, find_bundles, network
from lungmonai.recipe_record import sha256
from lungmonai.weights import check_plain, load_weights

STAGES: dict[str, tuple[str, str]] = {
    "cls": ("nodule_cls", "classifier"),
    "seg": ("nodule_seg", "segmenter"),
    "malignancy": ("nodule_malignancy", "classifier"),
}
"""Stage -> (bundle folder, the contract's network)."""

BOOK_MODEL_NAMES = {"cls": "LunaModel", "malignancy": "LunaModel", "seg": "UNetWrapper"}
"""The class name the book's training scripts record under ``model_name``."""

STAGE_WORDS = {"cls": "nodule classifier", "malignancy": "malignancy classifier", "seg": "segmentation"}

BOOK_SETTINGS: dict[str, Any] = {
    "grid_spacing_xyz": None,
    "hu_window": [-1000.0, 1000.0],
    "crop_shape": [32, 48, 48],
    "seg_context": 3,
}
"""The book's preprocessing, as contract settings: native voxels, HU clipped to [-1000, 1000],
32x48x48 classifier crops, 7-slice segmentation windows (3 on each side)."""

BOOK_PIPELINE: dict[str, Any] = {
    "seg_threshold": 0.5,
    # One erosion iteration for in-plane pixels from 0.4 to 1.2 mm (all of LUNA16's), as the
    # book erodes once; the project's 0.7 erodes twice below 0.467 mm.
    "erosion_mm": 0.6,
    "flip_tta_top": 0,
    "max_components": 0,
    "seg_score_power": 0.0,
    "restrict_to_lungs": False,
    "nodule_threshold": 0.5,
    "malignancy_threshold": 0.5,
    "precision": "fp32",
}
"""Pipeline settings of an imported folder: the book's thresholds, whole slices segmented, every
component classified, no flip averaging, float32."""

CLASSIFIER_DEF: dict[str, Any] = {
    "_target_": "lungmonai.classification.LunaModel",
    "in_channels": 1,
    "out_channels": 2,
    "spatial_size": "@crop_shape",
}

SEGMENTER_DEF: dict[str, Any] = {
    "_target_": "lungmonai.book.BookSegUNet",
    "in_channels": "$2 * @seg_context + 1",
    "out_channels": 1,
    "channels": [16, 32, 64],
    "output": "logits",
}

INPUT_BATCHNORM = {"classifier": "tail_batchnorm", "segmenter": "input_batchnorm"}
"""The batch norm each network starts with (same name in the book and here)."""

IMPORT_MARK = "_book_import"
"""Contract key of a folder this module made (a folder it may add stages to)."""

_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

REPRODUCES_BOOK = [
    "each CT's own voxels: grid_spacing_xyz null, no resampling",
    "HU clipped to [-1000, 1000] (scaled to [-1, 1] here; the input batch norm is rescaled to match, so the networks see the same values)",
    "segmentation on 7-slice windows (slice k and 3 on each side), slices past either end of the CT repeated",
    "segmentation threshold: probability > 0.5",
    "one binary erosion with the 6-neighbour cross (erosion_mm 0.6 gives one iteration for in-plane pixels of 0.4 to 1.2 mm)",
    "6-connected components; each centre the centre of mass weighted by clip(HU, -1000, 1000) + 1001",
    "32x48x48 classifier crops whose first voxel is the rounded centre minus 16, 24, 24",
    "P(nodule) the softmax of the two logits, not weighted by the segmentation (seg_score_power 0); a nodule when >= 0.5 (the book reports > 0.5)",
    "float32 forward passes (precision fp32), no flip averaging (flip_tta_top 0)",
    "whole slices segmented (restrict_to_lungs false) and every component classified (max_components 0)",
]

DIFFERS_FROM_BOOK = [
    "a slice region whose size is not a multiple of 8 is padded with air (-1000 HU) on its bottom and right",
    "a crop reaching past the CT is padded with air (the book shifts it inside the CT)",
    "a centre exactly halfway between voxels is rounded up (the book rounds half to even)",
    "a CT is first laid out with axial slices along its first axis (LPS); LUNA16's CTs already are, other inputs are not segmented the book's way",
    "the optimizer state is not imported: fine-tuning starts a new optimizer",
]


# --------------------------------------------------------------------------------------------
# key maps


def classifier_key_map() -> "OrderedDict[str, str]":
    """Every key of the book's ``LunaModel`` state dict and its name in
    :class:`lungmonai.classification.LunaModel`: the same but for the head, ``head_linear``."""
    keys: OrderedDict[str, str] = OrderedDict()
    for tensor in _BN_TENSORS:
        keys[f"tail_batchnorm.{tensor}"] = f"tail_batchnorm.{tensor}"
    for block in range(1, 5):
        for conv in (1, 2):
            for tensor in ("weight", "bias"):
                name = f"block{block}.conv{conv}.{tensor}"
                keys[name] = name
    keys["head_linear.weight"] = "head.weight"
    keys["head_linear.bias"] = "head.bias"
    return keys


def segmenter_key_map() -> "OrderedDict[str, str]":
    """Every key of the book's ``UNetWrapper`` state dict (depth 3, width factor 4, batch norm,
    7 input slices, 1 output map): :class:`~lungmonai.book.segnet.BookSegUNet` uses its names."""
    from lungmonai.book.segnet import BookSegUNet

    return OrderedDict((key, key) for key in BookSegUNet().state_dict())


def key_map(stage: str) -> "OrderedDict[str, str]":
    """Book key -> this project's key, for ``stage``."""
    _check_stage(stage)
    return segmenter_key_map() if stage == "seg" else classifier_key_map()


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {stage!r}")


# --------------------------------------------------------------------------------------------
# reading and mapping


def read_book_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The book checkpoint at ``path`` (tensors on the CPU), loaded with ``weights_only=True``.

    Refused, with a ``ValueError`` starting with the path: a file that needs code to load, a file
    torch cannot read, and anything that is not a dict with a ``model_state`` of tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such book checkpoint", str(path))
    try:
        state = load_weights(path, map_location="cpu")  # refuses a file that names code, naming it
    except (RuntimeError, EOFError, pickle.UnpicklingError, AttributeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path}: not a torch checkpoint torch can read ({first})") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: not a book checkpoint: it holds a {type(state).__name__}, not a dict with 'model_state'")
    if "model_state" not in state:
        raise ValueError(f"{path}: not a book checkpoint: no 'model_state' key (it has {sorted(map(str, state))})")
    model_state = state["model_state"]
    if not isinstance(model_state, Mapping):
        raise ValueError(f"{path}: 'model_state' is a {type(model_state).__name__}, not a state dict")
    for key, value in model_state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: model_state[{key!r}] is a {type(value).__name__}, not a tensor")
    return dict(state)


def _other_layout(stage: str) -> tuple[str, "OrderedDict[str, str]"]:
    other = "cls" if stage == "seg" else "seg"
    return other, key_map(other)


def check_stage(state: Mapping[str, Any], stage: str, path: str | os.PathLike[str]) -> None:
    """Refuse a checkpoint of another stage, naming what says so: ``model_name``, ``sys_argv``
    (the book's malignancy training runs with ``--malignant``) or a key of the other layout."""
    _check_stage(stage)
    name = state.get("model_name")
    expected = BOOK_MODEL_NAMES[stage]
    if name is not None and name != expected:
        stages = [s for s, n in BOOK_MODEL_NAMES.items() if n == name]
        hint = f"; import it with --stage {' or --stage '.join(stages)}" if stages else ""
        raise ValueError(f"{path}: model_name is {name!r}, not the book's {expected} that --stage {stage} "
                         f"({STAGE_WORDS[stage]}) imports{hint}")
    argv = state.get("sys_argv")
    if stage in ("cls", "malignancy") and isinstance(argv, (list, tuple)) and all(isinstance(a, str) for a in argv):
        malignant = "--malignant" in argv
        if stage == "cls" and malignant:
            raise ValueError(f"{path}: sys_argv has '--malignant': a malignancy classifier; import it with --stage malignancy")
        if stage == "malignancy" and not malignant:
            raise ValueError(f"{path}: sys_argv has no '--malignant': a nodule classifier; import it with --stage cls")
    own = key_map(stage)
    other, other_keys = _other_layout(stage)
    keys = list(state["model_state"])
    if not any(k in own for k in keys):
        foreign = [k for k in keys if k in other_keys]
        if foreign:
            raise ValueError(f"{path}: a book {STAGE_WORDS[other]} checkpoint (model_state has {foreign[0]!r}), "
                             f"not a {STAGE_WORDS[stage]} one; import it with --stage {other}")


def map_book_state(
    state: Mapping[str, Any], stage: str, path: str | os.PathLike[str], target: Mapping[str, torch.Tensor] | None = None
) -> "OrderedDict[str, torch.Tensor]":
    """``state['model_state']`` under this project's key names, every key checked.

    A missing key, a key the book's network has no place for, or a tensor whose shape is not the
    one ``target`` (the project's network's own state dict) has, is a ``ValueError`` naming the
    key. Tensors are copied to contiguous CPU tensors."""
    check_stage(state, stage, path)
    model_state = state["model_state"]
    mapping = key_map(stage)
    book_net = BOOK_MODEL_NAMES[stage]
    missing = [k for k in mapping if k not in model_state]
    if missing:
        more = f" ({len(missing)} keys missing)" if len(missing) > 1 else ""
        raise ValueError(f"{path}: model_state lacks {missing[0]!r}{more}, which the book's {book_net} has: "
                         f"not a complete book {STAGE_WORDS[stage]} checkpoint")
    extra = [k for k in model_state if k not in mapping]
    if extra:
        more = f" ({len(extra)} unexpected keys)" if len(extra) > 1 else ""
        raise ValueError(f"{path}: model_state has {extra[0]!r}{more}, which the book's {book_net} "
                         f"(--stage {stage}) has no place for")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for book_key, key in mapping.items():
        tensor = model_state[book_key].detach().to("cpu").clone().contiguous()
        if target is not None and tuple(tensor.shape) != tuple(target[key].shape):
            raise ValueError(f"{path}: model_state[{book_key!r}] has shape {tuple(tensor.shape)}; "
                             f"the {STAGE_WORDS[stage]} network needs {tuple(target[key].shape)}")
        if target is not None and tensor.dtype != target[key].dtype:
            if tensor.is_floating_point() != target[key].is_floating_point():
                raise ValueError(f"{path}: model_state[{book_key!r}] is {tensor.dtype}; the network needs {target[key].dtype}")
            tensor = tensor.to(target[key].dtype)
        out[key] = tensor
    return out


def fold_hu_scaling(
    state: "OrderedDict[str, torch.Tensor]",
    prefix: str,
    hu_window: tuple[float, float] | list[float],
    eps: float,
    path: str | os.PathLike[str],
) -> "OrderedDict[str, torch.Tensor]":
    """Rescale the running statistics of batch norm ``prefix`` so that it gives, on HU scaled
    from ``hu_window`` to [-1, 1], what it gave on the HU themselves (eval mode; exact up to
    float rounding). ``x = s * x' + c`` with ``s, c`` the window's half width and centre:
    ``(x - m) / sqrt(v + eps) == (x' - (m - c) / s) / sqrt((v + eps) / s**2)``, so the new mean is
    ``(m - c) / s`` and the new variance ``(v + eps) / s**2 - eps``, which must stay positive."""
    lo, hi = float(hu_window[0]), float(hu_window[1])
    scale, centre = (hi - lo) / 2.0, (hi + lo) / 2.0
    mean_key, var_key = f"{prefix}.running_mean", f"{prefix}.running_var"
    mean, var = state[mean_key].double(), state[var_key].double()
    new_var = (var + eps) / scale**2 - eps
    if not bool(torch.all(new_var > 0)) or not bool(torch.all(torch.isfinite(mean))):
        raise ValueError(f"{path}: model_state[{var_key!r}] ({var.min().item():.3g}) is too small for HU "
                         f"input: not the running variance of a network trained on CT values")
    out = OrderedDict(state)
    out[mean_key] = ((mean - centre) / scale).to(state[mean_key].dtype)
    out[var_key] = new_var.to(state[var_key].dtype)
    return out


# --------------------------------------------------------------------------------------------
# the bundles folder


def book_contract(source: Mapping[str, Any]) -> dict[str, Any]:
    """``source`` (a contract) with the book's settings, networks and pipeline settings."""
    out = copy.deepcopy(dict(source))
    out.update(copy.deepcopy(BOOK_SETTINGS))
    out["networks"] = {"classifier": copy.deepcopy(CLASSIFIER_DEF), "segmenter": copy.deepcopy(SEGMENTER_DEF)}
    out["pipeline"] = {**out.get("pipeline", {}), **BOOK_PIPELINE}
    out[IMPORT_MARK] = (
        "Made by `lungmonai import-book-checkpoint`: the settings and networks of Deep Learning with "
        "PyTorch (part 2), for its trained checkpoints (each imported one is recorded in its bundle's "
        "configs/metadata.json under imported_from). Each CT's own voxels, HU window [-1000, 1000], "
        "32x48x48 crops, 7-slice windows, the book's U-Net (logits out), its thresholds, one erosion."
    )
    return out


def _write_text(path: Path, text: str) -> None:
    from lungmonai.cache.atomic import atomic_write_text

    atomic_write_text(path, text)


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=4) + "\n")


def prepare_bundles(out: str | os.PathLike[str], bundles_dir: str | os.PathLike[str] | None = None) -> Path:
    """``out`` as a bundles folder with the book's contract: made from ``bundles_dir``'s configs
    and docs (no weights, runs or evaluations) when it does not exist or is empty; kept as it is
    when an earlier import made it. Any other folder is refused."""
    out = Path(out)
    if (out / CONTRACT).is_file():
        try:
            made_here = IMPORT_MARK in json.loads((out / CONTRACT).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{out / CONTRACT}: not JSON ({error})") from None
        if not made_here:
            raise ValueError(f"{out}: a bundles folder import-book-checkpoint did not make; "
                             "give --out a new folder (it copies the bundles' configs there)")
        return out.resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not a bundles folder import-book-checkpoint made; give a new or empty folder")
    source = find_bundles(bundles_dir)
    if out.resolve() == source or source in out.resolve().parents:
        raise ValueError(f"{out}: inside the source bundles {source}; give a folder outside it")
    copy_configs(source, out)
    _write_json(out / CONTRACT, book_contract(contract(source)))
    for metadata_path in sorted(out.glob("*/configs/metadata.json")):
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        for key in ("training", "eval_metrics", "eval_metrics_source"):  # about the project's weights
            metadata.pop(key, None)
        metadata["grid_spacing_xyz"] = BOOK_SETTINGS["grid_spacing_xyz"]
        _write_json(metadata_path, metadata)
    return out.resolve()


def _network_state(bundles: Path, name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    net = network(contract(bundles), name)
    return net, {k: v for k, v in net.state_dict().items()}


def _save_state(state: Mapping[str, torch.Tensor], path: Path) -> None:
    from lungmonai.cache.atomic import atomic_open

    state = OrderedDict((k, v.detach().cpu().contiguous()) for k, v in state.items())
    check_plain(dict(state), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)


def import_record(source: Path, state: Mapping[str, Any], stage: str, weights: Path, renamed: Mapping[str, str]) -> dict[str, Any]:
    """The ``imported_from`` record of a bundle's metadata."""
    plain = {k: state[k] for k in ("model_name", "optimizer_name", "sys_argv", "time") if k in state}
    record: dict[str, Any] = {
        "file": source.name,
        "sha256": sha256(source),
        "source": "a checkpoint trained with the code of Deep Learning with PyTorch (Stevens, Antiga, Viehmann; Manning 2020), part 2",
        "stage": stage,
        "book_epoch": state.get("epoch"),
        "book_training_samples": state.get("totalTrainingSamples_count"),
        **{f"book_{k}": v for k, v in plain.items()},
        "weights": f"models/{weights.name}",
        "weights_sha256": sha256(weights),
        "renamed_keys": dict(renamed),
        "input_scaling": ("the book's network reads HU clipped to [-1000, 1000], this one reads them scaled to [-1, 1]: "
                          f"the running mean and variance of {INPUT_BATCHNORM[STAGES[stage][1]]} were rescaled "
                          "(mean / 1000, (variance + eps) / 1000^2 - eps), which gives the book network's outputs"),
        "book_preprocessing": {
            "hu_clip": [-1000, 1000],
            "grid_spacing_xyz": None,
            "seg_context_slices": 7,
            "crop_shape": [32, 48, 48],
        },
        "reproduces_book": list(REPRODUCES_BOOK),
        "differs_from_book": list(DIFFERS_FROM_BOOK),
    }
    if stage == "seg":
        record["output"] = ("logits: the book's final sigmoid is left out of the network (output='logits'); "
                            "the pipeline's segment_ct applies it")
    return json.loads(json.dumps(record, default=str))  # plain JSON values only


def import_book_checkpoint(
    path: str | os.PathLike[str],
    stage: str,
    out: str | os.PathLike[str],
    bundles_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Path:
    """Import the book checkpoint ``path`` as ``stage`` ("cls", "seg" or "malignancy") into the
    bundles folder ``out``; returns the written ``models/model.pt``.

    ``out`` is made from ``bundles_dir`` (None: the installed bundles) on the first import and
    reused by the next ones. Existing weights of the stage are kept unless ``force``. The file is
    refused, before anything is written, when it is not a book checkpoint of that stage."""
    _check_stage(stage)
    path = Path(path)
    state = read_book_checkpoint(path)
    check_stage(state, stage, path)
    bundle, net_name = STAGES[stage]
    out_dir = Path(out)
    weights = out_dir / bundle / "models" / "model.pt"
    if weights.is_file() and not force:
        raise ValueError(f"{weights}: already holds weights; pass --force to replace them")
    # Mapped and checked against the book's settings before the folder is made or touched.
    probe = book_contract({"networks": {}, "pipeline": {}})
    template = network(probe, net_name)
    mapped = map_book_state(state, stage, path, template.state_dict())
    prefix = INPUT_BATCHNORM[net_name]
    mapped = fold_hu_scaling(mapped, prefix, BOOK_SETTINGS["hu_window"], getattr(template, prefix).eps, path)
    bundles = prepare_bundles(out_dir, bundles_dir)
    net, target = _network_state(bundles, net_name)
    if set(target) != set(mapped) or any(tuple(target[k].shape) != tuple(v.shape) for k, v in mapped.items()):
        raise ValueError(f"{bundles / CONTRACT}: its {net_name} is not the book's network; "
                         "import into a new folder")
    net.load_state_dict(mapped, strict=True)
    weights = bundles / bundle / "models" / "model.pt"
    _save_state(mapped, weights)
    metadata_path = bundles / bundle / "configs" / "metadata.json"
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    renamed = {k: v for k, v in key_map(stage).items() if k != v}
    metadata["imported_from"] = import_record(path, state, stage, weights, renamed)
    metadata["grid_spacing_xyz"] = BOOK_SETTINGS["grid_spacing_xyz"]
    _write_json(metadata_path, metadata)
    return weights


def summary(weights: Path) -> str:
    """One line about an import, from the metadata written beside ``weights``."""
    record = json.loads((weights.parent.parent / "configs" / "metadata.json").read_text(encoding="utf-8"))["imported_from"]
    tensors = len(load_weights(weights))
    return (f"{record['file']} (book epoch {record['book_epoch']}, {record['book_training_samples']} samples, "
            f"{tensors} tensors) -> {weights}; analyse with --bundles {weights.parent.parent.parent}")
