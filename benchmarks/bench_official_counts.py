"""Parameter and MAC counts of the official DeepSN-Net and FDTANet next to this project's re-implementations.

The official model files are imported at run time from a scratch checkout OUTSIDE this repository
(nothing of them is copied or committed)::

    python benchmarks/bench_official_counts.py --official-root /tmp/official

expects ``<root>/DeepSN-Net`` (``pandazcx/DeepSN-Net``) and ``<root>/FDTANet`` (``Tombs98/FDTANet``).
Counting convention (the issue's): parameters = sum of ``numel`` over ``parameters()``; MACs =
``torch.utils.flop_counter.FlopCounterMode`` flops / 2 for one 1x3x256x256 forward pass on the ``meta``
device (convs, linear layers and real/complex matmuls; FFTs and elementwise ops are not counted).
As a functional check, the official (randomly initialised) weights are loaded into our model through
a name map and both run on one 1x3x64x64 input in eval mode; the largest output difference is reported.

Packages the official files import but do not need for a forward pass are stubbed when missing
(``ptflops``, ``thop``); FDTANet imports ``utils.arch_utils.LayerNorm2d`` from the NAFNet/BasicSR tree,
which its repository does not contain, so the harness's :class:`interir.blocks.LayerNorm2d` (same
parameters) is injected under that name. Every stub is listed in the output.

Writes ``benchmarks/results/official_counts.json`` and ``benchmarks/results/official_counts.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from interir.registry import create_model  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SIZE = 256


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int = SIZE) -> float:
    """FlopCounterMode flops / 2 of one forward pass at 1x3xSIZExSIZE, run on the meta device."""
    model = model.to("meta").eval()
    x = torch.empty(1, 3, size, size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2


def _stub_module(name: str, attrs: dict | None = None) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs or {})
    mod.__stub__ = True
    return mod


class _Stubs:
    """Insert stub modules for missing imports while an official file is executed; undo afterwards."""

    def __init__(self) -> None:
        self.saved: dict[str, types.ModuleType | None] = {}
        self.applied: list[str] = []

    def add(self, name: str, module: types.ModuleType, force: bool = False, why: str = "") -> None:
        if not force:
            try:
                if importlib.util.find_spec(name) is not None:
                    return
            except (ImportError, ValueError):
                pass
        self.saved.setdefault(name, sys.modules.get(name))
        sys.modules[name] = module
        self.applied.append(f"{name} ({why or 'missing package, unused by the forward pass'})")

    def undo(self) -> None:
        for name, old in self.saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _unused(*_a, **_k):
    raise RuntimeError("stub: not available in this benchmark")


def _load_file(path: Path, module_name: str, extra_path: list[Path]) -> types.ModuleType:
    for p in extra_path:
        sys.path.insert(0, str(p))
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for p in extra_path:
            sys.path.remove(str(p))


def official_deepsn(root: Path, stubs: _Stubs) -> nn.Module:
    import yaml

    repo = root / "DeepSN-Net"
    stubs.add("ptflops", _stub_module("ptflops", {"get_model_complexity_info": _unused}))
    # The file does `import utils` (the repo's metrics helpers: skimage, cv2, torchvision); unused by the model.
    try:
        stubs.add("utils", _load_file(repo / "utils.py", "utils", []), force=True, why="the repo's own utils.py")
    except ImportError:
        stubs.add("utils", _stub_module("utils"), force=True, why="DeepSN-Net/utils.py deps missing; unused by model")
    module = _load_file(repo / "Model" / "DeepSN_Net.py", "official_deepsn_net", [repo])
    with open(repo / "Model" / "Config" / "DeepSN_Net.yml") as fh:
        args = yaml.safe_load(fh)
    args = args.get("network", args)
    return module.newton(args)


def official_fdtanet(root: Path, stubs: _Stubs) -> nn.Module:
    from interir.blocks import LayerNorm2d

    repo = root / "FDTANet"
    stubs.add("thop", _stub_module("thop", {"profile": _unused}))
    stubs.add("ptflops", _stub_module("ptflops", {"get_model_complexity_info": _unused}))
    stubs.add("utils", _stub_module("utils"), force=True, why="FDTANet expects NAFNet's utils package")
    stubs.add(
        "utils.arch_utils",
        _stub_module("utils.arch_utils", {"LayerNorm2d": LayerNorm2d}),
        force=True,
        why="not in the FDTANet repo; interir.blocks.LayerNorm2d injected (same parameters)",
    )
    module = _load_file(repo / "FDTANet.py", "official_fdtanet", [repo])
    return module.FDTANet()


# Official state-dict names -> ours, applied in order (re.sub). Used to load the official (randomly
# initialised) weights into our model and compare outputs: a functional check beyond the counts.
_BASIC = [  # official Basic_block -> ours BasicBlock
    (r"\.ca\.ca\.", ".ca.body."),
    (r"\.norm\.", ".freq.norm."),
    (r"\.(w[12])$", r".freq.\1"),
]
_AUX = [
    (r"auxiliary_variable\.basic_block\.", "aux.op."),
    (r"auxiliary_variable\.deri_1\.dconv1\.", "aux.prox.body.0."),
    (r"auxiliary_variable\.deri_1\.dconv2\.", "aux.prox.body.2."),
    (r"auxiliary_variable\.deri_2\.dconv1\.", "aux.deriv.body.0."),
    (r"auxiliary_variable\.deri_2\.dconv2\.", "aux.deriv.body.2."),
]
DEEPSN_RULES = [
    (r"^down_scale\.", "down."),
    (r"^up_scale\.1\.", "up.2."),
    (r"^conv_init\.", "init.mult."),
    (r"^image_update_list\.(\d+)\.", r"stages.\1.image_update."),
    (r"^multiplier_update_list\.(\d+)\.", r"stages.\1.multiplier_update."),
    (r"^matrix_P_update_list\.(\d+)\.basic_block\.", r"stages.\1.pq_update.op_p."),
    (r"^matrix_Q_update_list\.(\d+)\.basic_block\.", r"stages.\1.pq_update.op_q."),
    *_AUX,
    (r"(image_update)\.basic_block([1-4])\.", r"\1.e\2."),
    (r"(multiplier_update)\.basic_block\.", r"\1.op."),
    *_BASIC,
]
FDTANET_RULES = [
    (r"^ffcb2\.local\.", "fourier.local."),
    (r"^ffcb2\.nonlo\.fu\.conv_layer\.", "fourier.spectral.fu.conv."),
    (r"^ffcb2\.nonlo\.", "fourier.spectral."),
    (r"^ffcb2\.conv\.", "fourier.fuse."),
    (r"^middle_blks\.", "middle."),
    (r"\.b([1-3])\.", lambda m: f".blocks.{int(m.group(1)) - 1}."),
    (r"\.fdr([1-3])\.fft$", lambda m: f".reweights.{int(m.group(1)) - 1}.spectrum"),
    (r"\.fdr([1-3])\.conv3\.", lambda m: f".reweights.{int(m.group(1)) - 1}.conv."),
    (r"\.fffn\.norm1\.", ".ffn.norm."),
    (r"\.fffn\.fft$", ".ffn.spectrum"),
    (r"\.fffn\.", ".ffn."),
    (r"\.norm1\.", ".norm."),
    (r"\.sca\.1\.", ".sca.conv."),
]


def translate(state: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def output_difference(label: str, official: nn.Module, ours: nn.Module) -> tuple[float, float]:
    """Load the official weights into ours, run both on one 1x3x64x64 input x (eval).

    Returns (max |official(x) - ours(x)|, max |official(x) - x|); the second shows the check is not vacuous.
    """
    state = translate(official.state_dict(), DEEPSN_RULES if label == "DeepSN-Net" else FDTANET_RULES)
    if label == "DeepSN-Net":
        state["init.mult.bias"] = torch.zeros_like(ours.init.mult.bias)  # the official init conv has no bias
        # the official forward reuses image update depth-2 for the final step: give ours the same weights
        last, prev = len(ours.stages) - 1, len(ours.stages) - 2
        for key in [k for k in state if k.startswith(f"stages.{last}.image_update.")]:
            state[key] = state[key.replace(f"stages.{last}.", f"stages.{prev}.", 1)]
    ours.load_state_dict(state, strict=True)
    official.eval()
    ours.eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = official(x)
        return float((y - ours(x)).abs().max()), float((y - x).abs().max())


MODELS: dict[str, tuple[str, Callable[[Path, _Stubs], nn.Module], dict[str, float]]] = {
    # ours, official builder, paper (Table 8 / issue) numbers
    "DeepSN-Net": ("deepsn_net", official_deepsn, {"params_m": 24.0, "gmacs": 86.0}),
    "FDTANet": ("fdtanet", official_fdtanet, {}),
}


def measure(root: Path) -> dict:
    torch.set_num_threads(1)
    rows = {}
    for label, (ours_name, build, paper) in MODELS.items():
        stubs = _Stubs()
        row: dict = {"ours": ours_name, "paper": paper}
        try:
            torch.manual_seed(0)
            official = build(root, stubs)
            row["official_params"] = count_params(official)
            torch.manual_seed(0)
            ours_cpu = create_model(ours_name, "paper")
            diff, change = output_difference(label, official, ours_cpu)
            row["max_abs_output_diff_same_weights"] = diff
            row["max_abs_official_output_minus_input"] = change
            del ours_cpu
            row["official_gmacs"] = count_macs(official) / 1e9
        except Exception as exc:  # report and go on with the other model
            row["official_error"] = f"{type(exc).__name__}: {exc}"
        finally:
            stubs.undo()
            row["stubs"] = stubs.applied
        with torch.device("meta"):
            ours = create_model(ours_name, "paper")
        row["ours_params"] = count_params(ours)
        row["ours_gmacs"] = count_macs(ours) / 1e9
        if "official_params" in row:
            row["params_rel_diff"] = row["ours_params"] / row["official_params"] - 1
            row["gmacs_rel_diff"] = row["ours_gmacs"] / row["official_gmacs"] - 1
        rows[label] = row
        print(f"{label}: {json.dumps(row)}", flush=True)
    return {
        "convention": f"params = sum(numel); MACs = FlopCounterMode flops/2 at 1x3x{SIZE}x{SIZE} (meta device), "
        "FFTs not counted",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "models": rows,
    }


def to_markdown(result: dict) -> str:
    lines = [
        "| Model | Official params | Ours params | Δ params | Official GMACs | Ours GMACs | Δ MACs "
        "| max abs output diff, same weights | Paper |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in result["models"].items():
        paper = ", ".join(f"{k} {v:g}" for k, v in r["paper"].items()) or "-"
        if "official_params" in r:
            off_p, off_m = f"{r['official_params']:,}", f"{r['official_gmacs']:.3f}"
            dp = f"{r['ours_params'] - r['official_params']:+,} ({100 * r['params_rel_diff']:+.4f}%)"
            dm = f"{100 * r['gmacs_rel_diff']:+.3f}%"
            diff = r.get("max_abs_output_diff_same_weights")
            dout = "-" if diff is None else f"{diff:.2e} (output-input: {r['max_abs_official_output_minus_input']:.2e})"
        else:
            off_p = off_m = "error"
            dp = dm = dout = "-"
        lines.append(
            f"| {label} (`{r['ours']}`) | {off_p} | {r['ours_params']:,} | {dp} | {off_m} | "
            f"{r['ours_gmacs']:.3f} | {dm} | {dout} | {paper} |"
        )
    lines += ["", f"Convention: {result['convention']}; torch {result['torch']}."]
    for label, r in result["models"].items():
        if r.get("stubs"):
            lines.append(f"- {label}: stubbed imports: {'; '.join(r['stubs'])}.")
        if "official_error" in r:
            lines.append(f"- {label}: official model could not be built: {r['official_error']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-root", type=Path, required=True, help="folder holding DeepSN-Net/ and FDTANet/")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    root = args.official_root.resolve()
    if root == REPO or REPO in root.parents:
        ap.error("the official checkouts must live outside this repository")
    result = measure(root)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "official_counts.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "official_counts.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
