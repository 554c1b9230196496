"""ONNX and torch.export exports of tiny DyT models, verified on ONNX Runtime (and OpenVINO where it installs)."""
import json

import pytest
import torch

import dytune
from tests.conftest import converted, tiny_vit

pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")
from dytune.export import export_model, load_runner  # noqa: E402
from dytune.export import runtimes as runtimes_module  # noqa: E402
from dytune.bench.runtimes import runtime_compiler  # noqa: E402

ATOL = 1e-4


def _batches():
    gen = torch.Generator().manual_seed(7)
    return torch.randn(3, 3, 32, 32, generator=gen), torch.randn(1, 3, 32, 32, generator=gen)


def _check_on_onnxruntime(model, path, batches, mode):
    run = load_runner("onnxruntime", path)
    for x in batches:
        with torch.no_grad(), dytune.execution(model, mode, bucket=1):
            expected = model(x)
        assert abs(run(x.numpy()) - expected.numpy()).max() <= ATOL


@pytest.mark.slow
@pytest.mark.parametrize("variant,experts", [("mlp", 1), ("attn", 1), ("attn_mlp", 1), ("layer", 1), ("mlp", 3),
                                             ("layer", 3)])
def test_capacity_export_matches_eager_capacity_on_onnxruntime(tmp_path, variant, experts):
    model = converted("registers_layerscale", variant=variant, experts=experts).eval()
    example, other = _batches()
    dytune.set_capacity(model, dytune.plan_capacity(model, example))
    report = export_model(model, example, tmp_path / "m.onnx", verify_inputs=[other])
    assert report["verification"]["onnxruntime"]["passed"]
    assert report["verification"]["onnxruntime"]["max_abs_diff"] <= ATOL
    assert json.loads((tmp_path / "m.onnx.json").read_text())["capacities"] == report["capacities"]
    assert all(row["k"] == round(row["capacity"] * 16) for row in report["capacities"])
    _check_on_onnxruntime(model, tmp_path / "m.onnx", [torch.randn(5, 3, 32, 32)], "capacity")  # any batch size


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["mlp", "layer"])
def test_threshold_export_keeps_data_dependent_token_counts(tmp_path, variant):
    model = converted("vit_cls", variant=variant).eval()
    example, other = _batches()
    report = export_model(model, example, tmp_path / "m.onnx", routing_name="threshold", verify_inputs=[other])
    assert report["routing"] == "threshold" and report["verification"]["onnxruntime"]["passed"]
    batches = [torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    counts = set()
    for x in batches:
        with torch.no_grad(), dytune.execution(model, "sparse", bucket=1):
            model(x)
        counts.add(int(sum(mask.sum() for mask in dytune.keep_masks(model))))
    assert len(counts) > 1  # the batches keep different numbers of tokens, and one exported graph runs them all
    _check_on_onnxruntime(model, tmp_path / "m.onnx", batches, "sparse")


@pytest.mark.slow
def test_exported_program_of_both_routings(tmp_path):
    model = converted("vit_cls", variant="attn_mlp").eval()
    example, other = _batches()
    dytune.set_capacity(model, 0.5)
    for routing in ("capacity", "threshold"):
        report = export_model(model, example, tmp_path / f"{routing}.pt2", "exported-program", routing,
                              verify_inputs=[other])
        assert report["verification"]["torch"]["max_abs_diff"] <= ATOL


@pytest.mark.slow
def test_dense_and_adaptformer_export(tmp_path):
    example, other = _batches()
    for name, model in (("dense", tiny_vit()), ("adaptformer", converted("vit_cls", layers=()))):
        report = export_model(model.eval(), example, tmp_path / f"{name}.onnx", verify_inputs=[other])
        assert report["routing"] == "none" and report["verification"]["onnxruntime"]["passed"]


@pytest.mark.slow
def test_exports_that_cannot_work_are_refused_with_the_reason(tmp_path):
    example, _ = _batches()
    no_prefix = converted("avgpool_no_cls", variant="attn").eval()
    with pytest.raises(ValueError, match="threshold routing of 'attn' dispatch needs a prefix"):
        export_model(no_prefix, example, tmp_path / "a.onnx", routing_name="threshold")
    model = converted("vit_cls").eval()
    with pytest.raises(ValueError, match="needs a capacity for every dispatcher"):
        export_model(model, example, tmp_path / "b.onnx")
    dytune.set_capacity(model, 0.5)
    with pytest.raises(ValueError, match="format 'tflite': expected one of onnx, exported-program"):
        export_model(model, example, tmp_path / "d.onnx", "tflite")
    with pytest.raises(ValueError, match="runtime 'torch' does not run the onnx format"):
        export_model(model, example, tmp_path / "e.onnx", runtimes=["torch"])
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()


def test_a_missing_runtime_names_the_extra(monkeypatch):
    def fail(name):
        raise ImportError(f"No module named {name!r}")
    monkeypatch.setattr(runtimes_module.importlib, "import_module", fail)
    with pytest.raises(ImportError, match=r"install the export extra: pip install -e \"\.\[export\]\""):
        runtimes_module.require("onnxruntime", "running an ONNX export on ONNX Runtime")
    with pytest.raises(ValueError, match="runtime 'tensorrt': expected one of eager, onnxruntime, openvino"):
        runtime_compiler("tensorrt")


@pytest.mark.slow
def test_openvino_runs_the_same_export(tmp_path):
    pytest.importorskip("openvino", reason="openvino is not installed")
    model = converted("vit_cls", variant="layer").eval()
    example, other = _batches()
    dytune.set_capacity(model, 0.5)
    report = export_model(model, example, tmp_path / "m.onnx", verify_inputs=[other])
    assert report["verification"]["openvino"]["max_abs_diff"] <= ATOL
