#!/usr/bin/env python3
"""Maps a torchvision mobilenet_v2 state dict to deeperlab's MobileNetV2 backbone names and writes
safetensors (plain Python, no extra package). Nothing is downloaded: pass the file yourself, e.g.
  torch.save(torchvision.models.mobilenet_v2(weights=...).state_dict(), "mnv2.pth")
  convert_torchvision_mobilenet_v2.py mnv2.pth mnv2_backbone.safetensors

torchvision                      -> deeperlab (prefix "backbone." by default)
features.0.0 / features.0.1      -> stem.conv / stem.bn
features.1.conv.0.0 / .0.1       -> blocks.0.depthwise.conv / .bn        (expand ratio 1: no expand)
features.1.conv.1 / .2           -> blocks.0.project.conv / .bn
features.i.conv.0.0 / .0.1       -> blocks.(i-1).expand.conv / .bn       (i = 2..17)
features.i.conv.1.0 / .1.1       -> blocks.(i-1).depthwise.conv / .bn
features.i.conv.2 / .3           -> blocks.(i-1).project.conv / .bn
features.18.*, classifier.*, *.num_batches_tracked: dropped (DeepLab's backbone ends at 320 ch).
Only the kernel-3 model (backbone_kernel_size 3) can take these weights.
"""
import os
import re
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_deeperlab import convert_state_dict, converter_main  # noqa: E402


def map_name(name):
    """torchvision name -> deeperlab backbone name (without prefix), or None when dropped."""
    if name.endswith("num_batches_tracked") or name.startswith("classifier.") or name.startswith("features.18."):
        return None
    m = re.fullmatch(r"features\.0\.([01])\.(\w+)", name)
    if m:
        return f"stem.{'conv' if m.group(1) == '0' else 'bn'}.{m.group(2)}"
    m = re.fullmatch(r"features\.(\d+)\.conv\.(.+)", name)
    if not m:
        raise ValueError(f"unexpected torchvision parameter '{name}'")
    i, rest = int(m.group(1)), m.group(2)
    b = f"blocks.{i - 1}"
    table = ({"0.0": "depthwise.conv", "0.1": "depthwise.bn", "1": "project.conv", "2": "project.bn"} if i == 1 else
             {"0.0": "expand.conv", "0.1": "expand.bn", "1.0": "depthwise.conv", "1.1": "depthwise.bn",
              "2": "project.conv", "3": "project.bn"})
    mod, _, leaf = rest.rpartition(".")
    if mod not in table:
        raise ValueError(f"unexpected torchvision parameter '{name}'")
    return f"{b}.{table[mod]}.{leaf}"


def convert(src, dst, prefix="backbone."):
    return convert_state_dict(src, dst, map_name, "convert_torchvision_mobilenet_v2", prefix)


if __name__ == "__main__":
    converter_main(__doc__, "torchvision mobilenet_v2", map_name, "convert_torchvision_mobilenet_v2")
