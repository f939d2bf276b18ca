#!/usr/bin/env python3
"""Maps a timm `xception71` (aligned Xception) state dict to deeperlab's Xception71 backbone names
and writes safetensors (plain Python). Nothing is downloaded: pass the state-dict file yourself,
e.g. torch.save(timm.create_model("xception71", pretrained=True).state_dict(), "x71.pth").

timm                                   -> deeperlab (prefix "backbone." by default)
stem.0.conv / stem.0.bn                -> conv1.conv / conv1.bn
stem.1.conv / stem.1.bn                -> conv2.conv / conv2.bn        (older timm: ConvBnAct)
stem.1 / stem.2 (weight / bn)          -> conv2.conv / conv2.bn        (newer timm: conv, norm, act)
blocks.i (i = 0..4)                    -> entry(i+1)
blocks.i (i = 5..20)                   -> middle.(i-5)
blocks.21 / blocks.22                  -> exit1 / exit2
  .shortcut.conv / .shortcut.bn        -> .shortcut.conv / .shortcut.bn
  .stack.convJ.conv_dw / .bn_dw        -> .sepJ.depthwise / .sepJ.depthwise_bn
  .stack.convJ.conv_pw / .bn_pw        -> .sepJ.pointwise / .sepJ.pointwise_bn
head.*, fc.*, *.num_batches_tracked: dropped.
timm is not installed on the build machines, so this mapping is checked by a round trip through
ours_to_timm() (the inverse table) rather than against timm itself.
"""
import os
import re
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_deeperlab import convert_state_dict, converter_main  # noqa: E402

N_MIDDLE = 16


def block_name(i):
    if i < 5:
        return f"entry{i + 1}"
    if i < 5 + N_MIDDLE:
        return f"middle.{i - 5}"
    return {5 + N_MIDDLE: "exit1", 6 + N_MIDDLE: "exit2"}[i]


def map_name(name):
    if name.endswith("num_batches_tracked") or name.startswith(("head.", "fc.")):
        return None
    m = re.fullmatch(r"stem\.([01])\.(conv|bn)\.(\w+)", name)
    if m:
        return f"conv{int(m.group(1)) + 1}.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"stem\.1\.weight", name)
    if m:
        return "conv2.conv.weight"
    m = re.fullmatch(r"stem\.2\.(\w+)", name)
    if m:
        return f"conv2.bn.{m.group(1)}"
    m = re.fullmatch(r"blocks\.(\d+)\.shortcut\.(conv|bn)\.(\w+)", name)
    if m:
        return f"{block_name(int(m.group(1)))}.shortcut.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"blocks\.(\d+)\.stack\.conv(\d)\.(conv_dw|bn_dw|conv_pw|bn_pw)\.(\w+)", name)
    if m:
        part = {"conv_dw": "depthwise", "bn_dw": "depthwise_bn", "conv_pw": "pointwise", "bn_pw": "pointwise_bn"}
        return f"{block_name(int(m.group(1)))}.sep{m.group(2)}.{part[m.group(3)]}.{m.group(4)}"
    raise ValueError(f"unexpected timm xception71 parameter '{name}'")


def ours_to_timm(name):
    """Inverse of map_name for the older ConvBnAct stem layout (used by the round-trip test)."""
    m = re.fullmatch(r"conv([12])\.(conv|bn)\.(\w+)", name)
    if m:
        return f"stem.{int(m.group(1)) - 1}.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"(entry(\d)|middle\.(\d+)|exit([12]))\.(.+)", name)
    if not m:
        raise ValueError(name)
    i = int(m.group(2)) - 1 if m.group(2) else (5 + int(m.group(3)) if m.group(3) else 4 + N_MIDDLE + int(m.group(4)))
    rest = m.group(5)
    if rest.startswith("shortcut."):
        return f"blocks.{i}.{rest}"
    m = re.fullmatch(r"sep(\d)\.(depthwise|depthwise_bn|pointwise|pointwise_bn)\.(\w+)", rest)
    part = {"depthwise": "conv_dw", "depthwise_bn": "bn_dw", "pointwise": "conv_pw", "pointwise_bn": "bn_pw"}
    return f"blocks.{i}.stack.conv{m.group(1)}.{part[m.group(2)]}.{m.group(3)}"


def convert(src, dst, prefix="backbone."):
    return convert_state_dict(src, dst, map_name, "convert_timm_xception71", prefix)


if __name__ == "__main__":
    converter_main(__doc__, "timm xception71", map_name, "convert_timm_xception71")
