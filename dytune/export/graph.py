"""Export a (DyT) model with its task's inference step as one graph: ONNX or a torch.export program, verified.

The dynamic blocks run in one of two routings while the graph is traced:

* "capacity": each dispatcher keeps exactly its top-k patch tokens per image (`dytune.set_capacity`); every shape
  is static, so any ONNX runtime or static-shape compiler takes it.
* "threshold": the exact threshold routing of sparse inference; the kept-token counts are data-dependent sizes
  (ONNX NonZero, unbacked symbols in torch.export), which ONNX Runtime, OpenVINO and torch.export run but static-shape
  compilers (TensorRT) do not.

Models without dispatchers (dense, AdaptFormer, LoRA, ...) are exported as they are.
"""
from __future__ import annotations

import contextlib
import json
import platform
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import torch
from torch import nn

from ..core.calibrate import dispatchers
from ..core.capacity import capacities
from ..core.convert import converted_config, dynamic_blocks, execution, is_converted
from ..core.modules.capacity import capacity_count
from ..utils.io import atomic_write
from ..version import __version__
from .runtimes import FORMAT_RUNTIMES, available, load_runner, require

__all__ = ["FORMATS", "ROUTINGS", "InferenceGraph", "export_model", "export_problems", "routing"]

FORMATS = {"onnx": ".onnx", "exported-program": ".pt2"}
ROUTINGS = ("capacity", "threshold")
ONNX_OPSET = 18


class InferenceGraph(nn.Module):
    """The graph that is exported: `forward(inputs)` is the task's inference step on the model (heads, pooling,
    multi-view averaging, sliding windows), or `model(inputs)`.

    Args:
        model: The model, in eval mode.
        forward: The inference step, (model, inputs) -> outputs; None: model(inputs).
    """

    def __init__(self, model: nn.Module, forward: Optional[Callable[[nn.Module, torch.Tensor], torch.Tensor]] = None
                 ) -> None:
        super().__init__()
        self.model = model
        self.step = forward

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs) if self.step is None else self.step(self.model, inputs)


def _has_dispatchers(model: nn.Module) -> bool:
    return is_converted(model) and bool(dispatchers(model))


def export_problems(model: nn.Module, routing_name: str) -> List[str]:
    """Why `model` cannot be exported with `routing_name` (empty when it can)."""
    if routing_name not in ROUTINGS:
        return [f"routing {routing_name!r}: expected one of {', '.join(ROUTINGS)}"]
    if not _has_dispatchers(model):
        return []
    problems = []
    blocks = dynamic_blocks(model)
    if routing_name == "capacity" and any(c is None for c in capacities(model)):
        problems.append("capacity routing needs a capacity for every dispatcher (dytune.set_capacity, or "
                        "`dytune export --capacity`)")
    if routing_name == "threshold" and blocks[0].num_prefix_tokens == 0 and any(b.dispatches_attention for b in blocks):
        problems.append(f"threshold routing of {blocks[0].variant!r} dispatch needs a prefix (class) token: without "
                        f"one an image may keep no token, and attention over zero tokens has no exported form; use "
                        f"capacity routing")
    if any(b.between_sub_blocks is not None for b in blocks):
        problems.append("a between-sub-blocks hook (token merging) is set; export the model without it")
    return problems


@contextlib.contextmanager
def routing(model: nn.Module, name: str) -> Iterator[nn.Module]:
    """Run the dynamic blocks of `model` with routing `name` ("capacity" or "threshold"; a model without
    dispatchers runs as it is)."""
    if not _has_dispatchers(model) and not is_converted(model):
        yield model
        return
    mode = "capacity" if name == "capacity" and _has_dispatchers(model) else "sparse"
    with execution(model, mode, bucket=1):  # exact counts: a bucket would pad with rows the graph then computes
        yield model


def _capacity_report(model: nn.Module, example: torch.Tensor, forward: Callable) -> List[Dict[str, Any]]:
    """Per dispatcher: its capacity and the k it keeps of the patch tokens it saw on `example`."""
    rows = []
    with torch.no_grad(), execution(model, "capacity"):
        forward(model, example)
        for block in dynamic_blocks(model):
            for name, gate in block.dispatchers().items():
                tokens = block.keep_masks[name].shape[1]
                rows.append({"sub_block": name, "capacity": gate.capacity, "patch_tokens": tokens,
                             "k": capacity_count(gate.capacity, tokens)})
    return rows


def _trace(graph: InferenceGraph, example: torch.Tensor, dynamic_batch: bool) -> torch.export.ExportedProgram:
    shapes = {"inputs": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's notes on tracing (e.g. about inference mode)
        return torch.export.export(graph, (example,), dynamic_shapes=shapes)


def _save(program: torch.export.ExportedProgram, path: Path, fmt: str) -> None:
    if fmt == "exported-program":
        def save_program(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: torch.export warns about a path not ending in .pt2
                torch.export.save(program, f)
        atomic_write(path, save_program)
        return
    require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")

    def write(tmp: str) -> None:
        onnx_program = torch.onnx.export(program, dynamo=True, opset_version=ONNX_OPSET, input_names=["input"],
                                         output_names=["output"], verbose=False)
        onnx_program.save(tmp)
    atomic_write(path, write)


def export_model(
        model: nn.Module,
        example: torch.Tensor,
        path: Path,
        fmt: str = "onnx",
        routing_name: str = "capacity",
        forward: Optional[Callable[[nn.Module, torch.Tensor], torch.Tensor]] = None,
        verify_inputs: Sequence[torch.Tensor] = (),
        runtimes: Optional[Sequence[str]] = None,
        tolerance: float = 1e-4,
        dynamic_batch: bool = True,
        metadata: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Export `model` (with its inference step) to `path` and verify the export against eager execution.

    The export is run on `example` and each of `verify_inputs` by every available runtime of the format and compared
    with the eager model in the same routing; the largest absolute difference per runtime is reported. A difference
    above `tolerance` x max(1, largest |output|) raises. The report is also written as JSON to `<path>.json`.

    Args:
        model: A model in eval mode on the CPU (converted by dytune or not).
        example: An input batch (batch >= 2 with `dynamic_batch`: a batch of 1 would fix the size).
        path: The exported file (.onnx or .pt2).
        fmt: "onnx" or "exported-program".
        routing_name: "capacity" or "threshold" (see the module docstring).
        forward: The inference step, (model, inputs) -> outputs; None: model(inputs).
        verify_inputs: More batches to verify on (threshold routing: other kept-token counts).
        runtimes: Runtimes to verify with (default: every available one of the format).
        tolerance: Relative tolerance of the verification.
        dynamic_batch: Export with a symbolic batch size.
        metadata: Extra entries for the report (e.g. the run's classes and preprocessing).

    Returns:
        The report: format, routing, input shape, capacities (k per dispatcher), verification per runtime.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    problems = export_problems(model, routing_name)
    if problems:
        raise ValueError(f"cannot export {type(model).__name__} with {routing_name} routing: " + "; ".join(problems))
    if model.training:
        raise ValueError("export_model: call model.eval() first (exports are for inference)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = InferenceGraph(model, forward).eval()
    step = forward or (lambda m, x: m(x))
    batches = [example, *verify_inputs]
    with torch.no_grad(), routing(model, routing_name):
        references = [graph(x) for x in batches]
        try:
            program = _trace(graph, example, dynamic_batch)
            _save(program, path, fmt)
        except ImportError:
            raise
        except Exception as e:  # torch.export / ONNX conversion errors: name the model and the first line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"cannot export {type(model).__name__} with {routing_name} routing to {fmt}: "
                             f"{type(e).__name__}: {first}") from e
    wanted = list(runtimes) if runtimes is not None else [r for r in FORMAT_RUNTIMES[fmt] if available(r)]
    verification: Dict[str, Any] = {}
    for runtime in wanted:
        if runtime not in FORMAT_RUNTIMES[fmt]:
            raise ValueError(f"runtime {runtime!r} does not run the {fmt} format; it runs "
                             f"{', '.join(FORMAT_RUNTIMES[fmt])}")
        run = load_runner(runtime, path)
        diffs = [float(abs(run(x.numpy()) - ref.numpy()).max()) for x, ref in zip(batches, references)]
        scale = max(1.0, max(float(ref.abs().max()) for ref in references))
        verification[runtime] = {"max_abs_diff": max(diffs), "batches": [list(x.shape) for x in batches],
                                 "passed": max(diffs) <= tolerance * scale}
    config = converted_config(model)
    report: Dict[str, Any] = {
        "file": path.name, "format": fmt, "routing": routing_name if _has_dispatchers(model) else "none",
        "input_shape": list(example.shape), "dynamic_batch": dynamic_batch, "input_name": "input",
        "output_name": "output", "onnx_opset": ONNX_OPSET if fmt == "onnx" else None,
        "variant": config.variant if config else None, "experts": config.experts if config else None,
        "tolerance": tolerance, "reference": "eager PyTorch, fp32, same routing", "verification": verification,
        "versions": {"dytune": __version__, "torch": torch.__version__, "python": platform.python_version()},
        **(metadata or {}),
    }
    if routing_name == "capacity" and _has_dispatchers(model):
        report["capacities"] = _capacity_report(model, example, step)
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(Path(f"{path}.json"), lambda tmp: Path(tmp).write_text(text))
    failed = {r: v["max_abs_diff"] for r, v in verification.items() if not v["passed"]}
    if failed:
        raise ValueError(f"{path}: the export differs from eager {routing_name} execution by {failed} (max abs), "
                         f"above the tolerance {tolerance} x max(1, |output|); report in {path}.json")
    return report
