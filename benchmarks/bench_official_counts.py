"""Parameter and MAC counts of the official comparison models next to this project's re-implementations.

The official model files are imported at run time from a scratch checkout OUTSIDE this repository
(nothing of them is copied or committed)::

    python benchmarks/bench_official_counts.py --official-root /tmp/official

expects, under ``<root>``, one checkout per official repository, named as the repository:
``DeepSN-Net`` (``pandazcx/DeepSN-Net``), ``FDTANet`` (``Tombs98/FDTANet``), ``Restormer``
(``swz30/Restormer``), ``PromptIR`` (``va1shn9v/PromptIR``), ``2022-CVPR-AirNet``
(``XLearning-SCU/2022-CVPR-AirNet``), ``VLU-Net`` (``xianggkl/VLU-Net``) and ``Perceive-IR``
(``House-yuyu/Perceive-IR``); a missing one is reported and skipped.

The two sizing-only models are compared in part: VLU-Net's restorer (``VLUNet``, called with a fixed degradation
vector; CLIP and its adapter left out), and Perceive-IR's whole stage-2 network with *our* random-weight CLIP
ViT-B/32 towers (:mod:`baselines.clip_towers`) given to the official ``cyclicPrompt`` as its ``model_clip`` (the
``clip`` package and its weights are not available), so its CLIP part is ours on both sides. Counting convention (the
issue's): parameters = sum of ``numel`` over ``parameters()``; MACs = ``torch.utils.flop_counter.FlopCounterMode``
flops / 2 for one 1x3x256x256 forward pass on the ``meta`` device (convs, linear layers and real/complex
matmuls; FFTs, interpolation, elementwise ops and deformable convs are not counted). Deformable convs are
opaque to FlopCounterMode (mmcv's and torchvision's alike); their analytic count
(``pipelines.engine.profiling.deform_conv_macs``: the dense conv + 4 MACs per bilinear sample) is reported
next to it as ``*_gmacs_deform``.

As a functional check, the official (randomly initialised) weights are loaded into our model through
a name map and both run on one 1x3x64x64 input in eval mode; the largest output difference is reported.
For AirNet, whose offset/mask convs start at zero and whose BatchNorm statistics start at (0, 1), those are
first set to random values in the official model, so that the check exercises the deformable sampling and
the BatchNorm mapping.

Packages the official files import but do not need for a forward pass are stubbed when missing
(``ptflops``, ``thop``); FDTANet imports ``utils.arch_utils.LayerNorm2d`` from the NAFNet/BasicSR tree,
which its repository does not contain, so the harness's :class:`interir.blocks.LayerNorm2d` (same
parameters) is injected under that name; AirNet imports ``mmcv.ops.modulated_deform_conv2d`` (mmcv-full,
not installable here), which is replaced by a shim calling ``torchvision.ops.deform_conv2d`` with ``mask=``
(the same operation), so the output check covers everything but the deformable kernel itself. Every stub
is listed in the output.

Perceive-IR's official forward cannot run on the meta device (torchvision's ``Normalize`` checks values), so its
MACs are counted on the CPU. Writes ``benchmarks/results/official_counts.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import subprocess
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from interir.registry import create_model  # noqa: E402
from pipelines.engine.profiling import AnalyticCounter  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SIZE = 256


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int = SIZE, call: Callable | None = None, device: str = "meta"
               ) -> tuple[float, float]:
    """(FlopCounterMode flops / 2, analytic deformable-conv MACs) of one forward pass at 1x3xSIZExSIZE on ``device``."""
    model = model.to(device).eval()
    x = torch.rand(1, 3, size, size) if device == "cpu" else torch.empty(1, 3, size, size, device=device)
    counter, analytic = FlopCounterMode(display=False), AnalyticCounter()
    with counter, analytic, torch.no_grad():
        (call or type(model).__call__)(model, x)
    return counter.get_total_flops() / 2, analytic.deform


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


def _forget_modules(prefix: str) -> None:
    """Drop ``prefix`` and its submodules from ``sys.modules`` (official repos reuse package names: ``net``)."""
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


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


def official_restormer(root: Path, stubs: _Stubs) -> nn.Module:
    path = root / "Restormer" / "basicsr" / "models" / "archs" / "restormer_arch.py"
    return _load_file(path, "official_restormer", []).Restormer()  # the default (deraining/denoising) config


def official_promptir(root: Path, stubs: _Stubs) -> nn.Module:
    module = _load_file(root / "PromptIR" / "net" / "model.py", "official_promptir", [])
    return module.PromptIR(decoder=True)  # as train.py builds it


def _modulated_deform_conv2d(input, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups):
    """mmcv.ops.modulated_deform_conv2d's signature on torchvision's op (groups follow from the shapes)."""
    from torchvision.ops import deform_conv2d

    return deform_conv2d(input, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask)


def official_airnet(root: Path, stubs: _Stubs) -> nn.Module:
    repo = root / "2022-CVPR-AirNet"
    ops = _stub_module("mmcv.ops", {"modulated_deform_conv2d": _modulated_deform_conv2d})
    stubs.add("mmcv", _stub_module("mmcv", {"ops": ops}), why="mmcv-full not installed; shim below")
    stubs.add("mmcv.ops", ops, why="modulated_deform_conv2d -> torchvision.ops.deform_conv2d(mask=), same operation")
    _forget_modules("net")
    try:
        module = _load_file(repo / "net" / "model.py", "official_airnet", [repo])
    finally:
        _forget_modules("net")
    # option.py: batch_size = len(de_type) = 5, the MoCo queue is 256 * batch_size
    return module.AirNet(types.SimpleNamespace(batch_size=5))


def official_vlunet(root: Path, stubs: _Stubs) -> nn.Module:
    module = _load_file(root / "VLU-Net" / "net" / "Final.py", "official_vlunet", [])
    return module.VLUNet(7)  # train.py l.38: de_dim 7 (the default, seven tasks)


def _vector(x: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for VLU-Net's CLIP degradation vector (B x 512), on x's device (meta included)."""
    return torch.linspace(-1, 1, 512, device=x.device).expand(x.shape[0], -1)


def _vlunet_call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x, _vector(x))


class _ClipTowers(nn.Module):
    """The ``model_clip`` interface the official Perceive-IR uses, on our random-weight ViT-B/32 towers."""

    def __init__(self, eot: int) -> None:
        super().__init__()
        from baselines.clip_towers import TEXT, VISION, TextTower, VisionTower

        self.vision, self.text, self.eot = VisionTower(**VISION["vit_b_32"]), TextTower(**TEXT["vit_b_32"]), eot

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.vision(x)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens, self.eot)  # the fixed caption's end token (argmax of the ids in CLIP)


def official_perceiveir(root: Path, stubs: _Stubs) -> nn.Module:
    from baselines.perceiveir_sizing import CAPTION_TOKENS

    src = root / "Perceive-IR" / "src"
    stubs.add("clip", _stub_module("clip"), force=True, why="OpenAI clip package: only its model is used, ours given")
    stubs.add("basicsr", _stub_module("basicsr"), force=True, why="the repo's basicsr package (data, models: unused)")
    stubs.add("basicsr.archs", _stub_module("basicsr.archs"), force=True, why="only restormer_arch is needed")
    stubs.add("basicsr.archs.restormer_arch",
              _load_file(src / "basicsr" / "archs" / "restormer_arch.py", "basicsr.archs.restormer_arch", []),
              force=True, why="the repo's own restormer_arch.py, loaded alone")
    module = _load_file(src / "basicsr" / "archs" / "stage2_arch.py", "official_perceiveir", [])
    # options/test_5D.yml l.52-66: Restormer widths, num_vector 8, iter_times 2
    return module.cyclicPrompt(model_clip=_ClipTowers(CAPTION_TOKENS + 1), num_vector=8, num_blocks=[4, 6, 6, 8],
                               iter_times=2)


def _perceiveir_caption() -> torch.Tensor:
    from baselines.perceiveir_sizing import caption_tokens

    return caption_tokens()  # the paper preset's stand-in caption


def _perceiveir_call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x, _perceiveir_caption().to(x.device))[0]  # (mean output, per-pass outputs)


def _perceiveir_perturb(official: nn.Module) -> None:
    """Non-zero CHIMB residual scales (zero at init), so the residue-prior path changes the second pass."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in official.modules():
            if type(mod).__name__ == "CHIMB":
                mod.beta.copy_(torch.randn(mod.beta.shape, generator=g))
                mod.gamma.copy_(torch.randn(mod.gamma.shape, generator=g))


def _airnet_call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x, x)  # the official test-time call: net(x_query=x, x_key=x)


def _airnet_perturb(official: nn.Module) -> None:
    """Random offset/mask convs and BatchNorm statistics, so the output check is not at the zero-offset init."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, mod in official.named_modules():
            if name.endswith("conv_offset_mask"):
                mod.weight.copy_(0.02 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.5 * torch.randn(mod.bias.shape, generator=g))
            elif isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
                mod.weight.copy_(0.5 + torch.rand(mod.weight.shape, generator=g))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))


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


_RESTORMER_BLOCK = [  # official TransformerBlock -> ours (baselines.restormer)
    (r"\.norm([12])\.body\.", r".norm\1."),
    (r"\.attn\.qkv_dwconv\.", ".attn.qkv_dw."),
    (r"\.attn\.project_out\.", ".attn.proj."),
    (r"\.ffn\.project_in\.", ".ffn.proj_in."),
    (r"\.ffn\.dwconv\.", ".ffn.dw."),
    (r"\.ffn\.project_out\.", ".ffn.proj_out."),
]
RESTORMER_RULES = [
    (r"^patch_embed\.proj\.", "embed."),
    (r"^encoder_level([1-3])\.", lambda m: f"encoders.{int(m.group(1)) - 1}."),
    (r"^down([1-3])_\d\.body\.", lambda m: f"downs.{int(m.group(1)) - 1}."),
    (r"^up4_3\.body\.", "ups.0."),
    (r"^up3_2\.body\.", "ups.1."),
    (r"^up2_1\.body\.", "ups.2."),
    (r"^reduce_chan_level3\.", "reduces.0."),
    (r"^reduce_chan_level2\.", "reduces.1."),
    (r"^decoder_level([1-3])\.", lambda m: f"decoders.{3 - int(m.group(1))}."),
    *_RESTORMER_BLOCK,
]
PROMPTIR_RULES = [  # promptK / noise_levelK / reduce_noise_levelK -> prompts.(3 - K): deepest first
    (r"^prompt([1-3])\.prompt_param$", lambda m: f"prompts.{3 - int(m.group(1))}.gen.components"),
    (r"^prompt([1-3])\.linear_layer\.", lambda m: f"prompts.{3 - int(m.group(1))}.gen.weights."),
    (r"^prompt([1-3])\.conv3x3\.", lambda m: f"prompts.{3 - int(m.group(1))}.gen.conv."),
    (r"^noise_level([1-3])\.", lambda m: f"prompts.{3 - int(m.group(1))}.block."),
    (r"^reduce_noise_level([1-3])\.", lambda m: f"prompts.{3 - int(m.group(1))}.reduce."),
    *RESTORMER_RULES,
]
AIRNET_RULES = [
    (r"^R\.head\.0\.", "restorer.head."),
    (r"^R\.tail\.0\.", "restorer.tail."),
    (r"^R\.body\.5\.", "restorer.conv."),  # DGRN body = 5 groups + a conv
    (r"^R\.body\.(\d)\.body\.(\d)\.",  # DGG body = 5 blocks + a conv
     lambda m: f"restorer.groups.{m.group(1)}." + ("conv." if m.group(2) == "5" else f"blocks.{m.group(2)}.")),
    (r"\.dcn\.conv_offset_mask\.", ".dcn.offset_mask."),
    (r"\.sft\.conv_gamma\.", ".sft.gamma."),
    (r"\.sft\.conv_beta\.", ".sft.beta."),
    (r"^E\.E\.encoder_q\.", "encoder.query."),
    (r"^E\.E\.encoder_k\.", "encoder.key."),
    (r"^E\.E\.queue", "encoder.queue"),
    (r"\.E_pre\.", ".pre."),
    (r"\.E\.([01])\.", r".down.\1."),
    (r"\.backbone\.", ".body."),
]


VLUNET_RULES = [
    (r"^patch_embed\.proj\.", "embed."),
    (r"^patch_embed_i\.proj\.", "embed_y."),
    (r"^encoder_level([1-3])\.", lambda m: f"encoders.{int(m.group(1)) - 1}."),
    (r"^down([1-3])_\d_i\.body\.", lambda m: f"downs_y.{int(m.group(1)) - 1}."),
    (r"^down([1-3])_\d\.body\.", lambda m: f"downs.{int(m.group(1)) - 1}."),
    (r"^up(4_3|3_2|2_1)(_i)?\.body\.",
     lambda m: ("ups_y." if m.group(2) else "ups.") + {"4_3": "0.", "3_2": "1.", "2_1": "2."}[m.group(1)]),
    (r"^reduce_chan_level3_img\.", "reduces_y.0."),
    (r"^reduce_chan_level2_img\.", "reduces_y.1."),
    (r"^reduce_chan_level3\.", "reduces.0."),
    (r"^reduce_chan_level2\.", "reduces.1."),
    (r"^decoder_level([1-3])\.", lambda m: f"decoders.{3 - int(m.group(1))}."),
    (r"\.gradient_descent\.", ".gradient."),
    (r"\.gradient\.phit\.", ".gradient.phi_t."),
    (r"\.gradient\.linear\.", ".gradient.weights."),
    (r"\.gradient\.prompt_param$", ".gradient.components"),
    (r"\.phi\.qv_dwconv\.", ".phi.qv_dw."),
    (r"\.phi\.k_dwconv\.", ".phi.k_dw."),
    (r"\.phi(_t)?\.project_out\.", lambda m: f".phi{m.group(1) or ''}.proj."),
    (r"\.phi_t\.qkv_dwconv\.", ".phi_t.qkv_dw."),
    (r"\.denoiser\.blocks\.", ".denoiser."),
    *_RESTORMER_BLOCK,
]
PERCEIVEIR_RULES = [
    (r"^model_clip\.", ""),  # our towers on both sides: vision.*, text.*
    (r"^(decoder_level[1-3])\.norm1\.", r"\1.norm_text."),
    (r"^(decoder_level[1-3])\.norm2\.", r"\1.norm_img."),
    (r"\.cross_att_text\.", ".cross_text."),
    (r"\.cross_att_img\.", ".cross_img."),
    (r"\.to_out\.0\.", ".to_out."),
    (r"\.fuse_rcp\.conv_gama\.", ".modulation.gamma."),
    (r"\.fuse_rcp\.conv_beta\.", ".modulation.beta."),
    (r"\.fuse_rcp\.", ".modulation."),
    (r"\.RestormerBlock\.", ".blocks."),
    (r"^deg_aware\.linear1\.", "deg_aware.0."),
    (r"^deg_aware\.layernorm\.", "deg_aware.1."),
    (r"^deg_aware\.linear2\.", "deg_aware.3."),
    (r"^hq_mlp\.linear1\.", "hq_mlp.0."),  # the official OrderedDict's repeated names leave 4 layers
    (r"^hq_mlp\.layernorm\.", "hq_mlp.1."),
    (r"^hq_mlp\.linear2\.", "hq_mlp.3."),
    (r"^rcp_ch\.", "rcp_level1."),
    (r"^rcp_down([12])\.body\.", r"rcp_down\1."),
    (r"^rcp_extractor\.conv_init([12])\.conv\.", r"residue.init\1."),
    (r"^rcp_extractor\.extra\.module_body\.2\.", "residue.conv."),
    (r"^rcp_extractor\.extra\.module_body\.([01])\.", r"residue.blocks.\1."),
    (r"\.sca1\.", ".lka."),
    (r"\.sca2\.1\.", ".sca."),
    *RESTORMER_RULES,
]


def translate(state: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def _deepsn_fixup(state: dict[str, torch.Tensor], ours: nn.Module) -> None:
    state["init.mult.bias"] = torch.zeros_like(ours.init.mult.bias)  # the official init conv has no bias
    # the official forward reuses image update depth-2 for the final step: give ours the same weights
    last, prev = len(ours.stages) - 1, len(ours.stages) - 2
    for key in [k for k in state if k.startswith(f"stages.{last}.image_update.")]:
        state[key] = state[key.replace(f"stages.{last}.", f"stages.{prev}.", 1)]


def _components_fixup(state: dict[str, torch.Tensor], ours: nn.Module) -> None:
    for key in [k for k in state if k.endswith(".components")]:
        state[key] = state[key].squeeze(0)  # (1, N, C, S, S) -> (N, C, S, S)


def _perceiveir_fixup(state: dict[str, torch.Tensor], ours: nn.Module) -> None:
    for key in [k for k in state if re.search(r"^rcp_extractor\.conv_init[12]\.ins\.", k)]:
        del state[key]  # InstanceNorm2d built by the official convd, never used by its forward; not built by ours


def _promptir_fixup(state: dict[str, torch.Tensor], ours: nn.Module) -> None:
    for key in [k for k in state if re.match(r"^(chnl_reduce|reduce_noise_channel_)", k)]:
        del state[key]  # built by the official __init__, never used by its forward; not built by ours
    for key in [k for k in state if k.endswith(".gen.components")]:
        state[key] = state[key].squeeze(0)  # (1, N, C, S, S) -> (N, C, S, S)


@dataclass
class Spec:
    ours: str
    build: Callable[[Path, _Stubs], nn.Module]
    rules: list
    paper: dict[str, float] = field(default_factory=dict)  # the paper's Table 8 numbers, where it has the model
    fixup: Callable[[dict, nn.Module], None] | None = None  # adjust the translated state dict
    perturb: Callable[[nn.Module], None] | None = None  # randomise parts of the official model before the check
    call: Callable | None = None  # how to call the official model on one input
    repo: str = ""
    part: Callable[[nn.Module], nn.Module] | None = None  # the part of our registered model that is compared
    ours_call: Callable | None = None  # how to call that part on one input
    official_macs_device: str = "meta"
    note: str = ""


def output_difference(spec: Spec, official: nn.Module, ours: nn.Module) -> tuple[float, float]:
    """Load the official weights into ours, run both on one 1x3x64x64 input x (eval).

    Returns (max |official(x) - ours(x)|, max |official(x) - x|); the second shows the check is not vacuous.
    """
    if spec.perturb is not None:
        spec.perturb(official)
    state = translate(official.state_dict(), spec.rules)
    if spec.fixup is not None:
        spec.fixup(state, ours)
    ours.load_state_dict(state, strict=True)
    official.eval()
    ours.eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = (spec.call or type(official).__call__)(official, x)
        return float((y - (spec.ours_call or type(ours).__call__)(ours, x)).abs().max()), float((y - x).abs().max())


MODELS: dict[str, Spec] = {
    "DeepSN-Net": Spec("deepsn_net", official_deepsn, DEEPSN_RULES, {"params_m": 24.0, "gmacs": 86.0},
                       fixup=_deepsn_fixup, repo="DeepSN-Net"),
    "FDTANet": Spec("fdtanet", official_fdtanet, FDTANET_RULES, repo="FDTANet"),
    "Restormer": Spec("restormer", official_restormer, RESTORMER_RULES, repo="Restormer"),
    "PromptIR": Spec("promptir", official_promptir, PROMPTIR_RULES, {"params_m": 33.0, "gmacs": 134.0},
                     fixup=_promptir_fixup, repo="PromptIR"),
    "AirNet": Spec("airnet", official_airnet, AIRNET_RULES, perturb=_airnet_perturb, call=_airnet_call,
                   repo="2022-CVPR-AirNet"),
    "VLU-Net": Spec("vlunet_sizing", official_vlunet, VLUNET_RULES, {"params_m": 35.0, "gmacs": 143.0},
                    fixup=_components_fixup, call=_vlunet_call, repo="VLU-Net", part=lambda m: m.restorer,
                    ours_call=_vlunet_call, note="restorer only (VLUNet(de_dim=7)); CLIP + adapter not compared"),
    "Perceive-IR": Spec("perceiveir_sizing", official_perceiveir, PERCEIVEIR_RULES, {"params_m": 45.0, "gmacs": 144.0},
                        fixup=_perceiveir_fixup, perturb=_perceiveir_perturb, call=_perceiveir_call,
                        repo="Perceive-IR", official_macs_device="cpu",
                        note="whole stage-2 network; both sides use our random-weight CLIP ViT-B/32 towers "
                             "(151,277,312 params, 11.80 G MACs of the totals)"),
}


def _commit(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def measure(root: Path, only: list[str] | None = None) -> dict:
    torch.set_num_threads(1)
    rows = {}
    for label, spec in MODELS.items():
        if only and label not in only:
            continue
        stubs = _Stubs()
        row: dict = {"ours": spec.ours, "paper": spec.paper, "official_repo": spec.repo,
                     "official_commit": _commit(root / spec.repo), "note": spec.note}
        part = spec.part or (lambda m: m)
        try:
            torch.manual_seed(0)
            official = spec.build(root, stubs)
            row["official_params"] = count_params(official)
            torch.manual_seed(0)
            ours_cpu = part(create_model(spec.ours, "paper"))
            diff, change = output_difference(spec, official, ours_cpu)
            row["max_abs_output_diff_same_weights"] = diff
            row["max_abs_official_output_minus_input"] = change
            del ours_cpu
            macs, deform = count_macs(official, call=spec.call, device=spec.official_macs_device)
            row["official_gmacs"], row["official_gmacs_deform"] = macs / 1e9, deform / 1e9
        except Exception as exc:  # report and go on with the other models
            row["official_error"] = f"{type(exc).__name__}: {exc}"
        finally:
            stubs.undo()
            row["stubs"] = stubs.applied
        with torch.device("meta"):
            ours = part(create_model(spec.ours, "paper"))
        row["ours_params"] = count_params(ours)
        macs, deform = count_macs(ours, call=spec.ours_call)
        row["ours_gmacs"], row["ours_gmacs_deform"] = macs / 1e9, deform / 1e9
        if "official_gmacs" in row:
            row["params_rel_diff"] = row["ours_params"] / row["official_params"] - 1
            row["gmacs_rel_diff"] = row["ours_gmacs"] / row["official_gmacs"] - 1
        rows[label] = row
        print(f"{label}: {json.dumps(row)}", flush=True)
    return {
        "convention": f"params = sum(numel); MACs = FlopCounterMode flops/2 at 1x3x{SIZE}x{SIZE} (meta device), "
        "FFTs and deformable convs not counted (the latter analytic in *_gmacs_deform: dense conv + 4 MACs per "
        "bilinear sample)",
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
        if "official_gmacs" in r:
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
        if r.get("official_gmacs_deform") or r.get("ours_gmacs_deform"):
            off = r.get("official_gmacs_deform")
            official = "-" if off is None else f"{off:.3f} G (total with them {r['official_gmacs'] + off:.3f} G)"
            lines.append(f"- {label}: deformable convs, not counted above: official {official}, "
                         f"ours {r['ours_gmacs_deform']:.3f} G "
                         f"(total {r['ours_gmacs'] + r['ours_gmacs_deform']:.3f} G).")
    for label, r in result["models"].items():
        if r.get("note"):
            lines.append(f"- {label}: compared: {r['note']}.")
    for label, r in result["models"].items():
        if r.get("official_commit"):
            lines.append(f"- {label}: official code `{r['official_repo']}` at {r['official_commit'][:7]}.")
    for label, r in result["models"].items():
        if r.get("stubs"):
            lines.append(f"- {label}: stubbed imports: {'; '.join(r['stubs'])}.")
        if "official_error" in r:
            lines.append(f"- {label}: official model could not be built: {r['official_error']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-root", type=Path, required=True,
                    help="folder holding the official checkouts (DeepSN-Net/, FDTANet/, Restormer/, PromptIR/, "
                         "2022-CVPR-AirNet/)")
    ap.add_argument("--models", help=f"comma-separated subset of {', '.join(MODELS)} (default: all)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    root = args.official_root.resolve()
    if root == REPO or REPO in root.parents:
        ap.error("the official checkouts must live outside this repository")
    result = measure(root, args.models.split(",") if args.models else None)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "official_counts.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "official_counts.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
