#!/usr/bin/env python3
"""PyTorch definition of the DeeperLab network, used only as a test reference for the C++ build.

Same parameter names, same padding rule (symmetric k_eff // 2), same space-to-depth channel order
(TensorFlow's: out_c = (dy * b + dx) * C + c), same output geometry (heads resized with
align_corners=True from stride 4 straight to the input size). Built from the "model" section of
a deeperlab JSON config; defaults mirror parser/config.h.

Also: plain-Python safetensors read/write (json header + raw bytes; no extra package) and a job
runner used by tests/test_network_conformance.cpp:

  torch_deeperlab.py run JOBS.json      run every job of the list (one interpreter for all)
  torch_deeperlab.py params CONFIG      print parameter names, shapes and the total
"""
import json
import os
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# safetensors (https://github.com/huggingface/safetensors: u64 header size, JSON header, data)
_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
              "F16": np.float16}


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> torch.Tensor or numpy array (written in insertion order)."""
    header, blobs, offset = {}, [], 0
    inv = {np.dtype(v): k for k, v in _ST_DTYPES.items()}
    for name, t in tensors.items():
        a = t.detach().cpu().contiguous().numpy() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
        if a.dtype not in inv:
            raise ValueError(f"write_safetensors: {name}: unsupported dtype {a.dtype}")
        b = a.tobytes()
        header[name] = {"dtype": inv[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    import os
    os.replace(tmp, path)

def convert_state_dict(src, dst, map_name, converter, prefix="backbone."):
    """Loads a torch.save'd state dict, renames every tensor with map_name (None = drop it),
    prepends prefix and writes float32 safetensors; returns the written dict."""
    state = torch.load(src, map_location="cpu")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    out = {}
    for name, t in state.items():
        ours = map_name(name)
        if ours is not None:
            out[prefix + ours] = t.detach().to(torch.float32).contiguous()
    write_safetensors(dst, out, {"source": os.path.basename(src), "converter": converter})
    return out


def converter_main(doc, what, map_name, converter):
    """The command line shared by the backbone converters: SRC DST [--prefix P]."""
    import argparse
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help=f"torch.save'd {what} state dict")
    ap.add_argument("dst", help="output .safetensors")
    ap.add_argument("--prefix", default="backbone.", help="prepended to every name (default: backbone.)")
    a = ap.parse_args()
    out = convert_state_dict(a.src, a.dst, map_name, converter, a.prefix)
    print(f"wrote {len(out)} tensors to {a.dst}")


def read_safetensors(path):
    """Returns dict name -> torch.Tensor (BF16 converted to F32)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        s, e = info["data_offsets"]
        raw = data[base + s:base + e]
        if info["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, dtype=_ST_DTYPES[info["dtype"]])
        out[name] = torch.from_numpy(a.copy().reshape(info["shape"]))
    return out


# ---------------------------------------------------------------------------------------------
# config (defaults mirror parser/config.h, model section)
MODEL_DEFAULTS = dict(
    backbone="mobilenet_v2", width_multiplier=1.0, backbone_kernel_size=5, output_stride=16,
    xception_middle_units=16, aspp_channels=256, aspp_rates=[6, 12, 18], low_level_channels=32,
    decoder_widths=[4096, 4096], decoder_kernel_size=7, head_kernel_size=7, semantic_head_width=256,
    instance_head_width=64, num_classes=19, bn_eps=1e-3, bn_momentum=0.1, bn_track_num_batches=False,
    init_seed=0)
NUM_KEYPOINTS, NUM_EDGES = 5, 8


def load_model_config(path):
    with open(path) as f:
        cfg = json.load(f)
    m = dict(MODEL_DEFAULTS)
    for k, v in cfg.get("model", {}).items():
        if k not in m:
            raise ValueError(f"config {path}: unknown field 'model.{k}'")
        m[k] = v
    return m


# ---------------------------------------------------------------------------------------------
# layers
def make_divisible(v, divisor=8):
    n = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if n < 0.9 * v:
        n += divisor
    return n


class Conv2d(nn.Conv2d):
    """nn.Conv2d; in float64 a grouped conv runs as unfold + multiply-sum, because PyTorch's CPU
    float64 grouped convolution loops over the groups one by one (minutes instead of seconds)."""

    def forward(self, x):
        if x.dtype != torch.float64 or self.groups == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        cols = F.unfold(x, (kh, kw), dilation=self.dilation, padding=self.padding, stride=self.stride)
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        g, cin_g, cout_g = self.groups, c // self.groups, self.out_channels // self.groups
        cols = cols.view(n, g, 1, cin_g * kh * kw, ho * wo)
        wt = self.weight.view(1, g, cout_g, cin_g * kh * kw, 1)
        y = (cols * wt).sum(3).view(n, self.out_channels, ho, wo)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y


def conv(cin, cout, k, stride=1, dilation=1, groups=1, bias=False):
    k_eff = k + (k - 1) * (dilation - 1)
    return Conv2d(cin, cout, k, stride=stride, padding=k_eff // 2, dilation=dilation, groups=groups, bias=bias)


class BN(nn.BatchNorm2d):
    def __init__(self, c, bn):
        super().__init__(c, eps=bn["eps"], momentum=bn["momentum"], track_running_stats=True)


class ConvBn(nn.Module):
    def __init__(self, cin, cout, k, bn, act="relu", stride=1, dilation=1, groups=1):
        super().__init__()
        self.conv = conv(cin, cout, k, stride, dilation, groups)
        self.bn = BN(cout, bn)
        self.act = act

    def forward(self, x):
        return apply_act(self.bn(self.conv(x)), self.act)


def apply_act(x, act):
    if act == "relu":
        return F.relu(x)
    if act == "relu6":
        return F.relu6(x)
    return x


class SeparableConv2d(nn.Module):
    def __init__(self, cin, cout, k, bn, stride=1, dilation=1, act=True):
        super().__init__()
        self.depthwise = conv(cin, cin, k, stride, dilation, groups=cin)
        self.depthwise_bn = BN(cin, bn)
        self.pointwise = conv(cin, cout, 1)
        self.pointwise_bn = BN(cout, bn)
        self.act = "relu" if act else None

    def forward(self, x):
        x = apply_act(self.depthwise_bn(self.depthwise(x)), self.act)
        return apply_act(self.pointwise_bn(self.pointwise(x)), self.act)


class StrideTracker:
    def __init__(self, output_stride):
        self.output_stride, self.current, self.dilation = output_stride, 1, 1

    def next(self, stride):
        if self.current * stride > self.output_stride:
            d = self.dilation
            self.dilation *= stride
            return 1, d
        self.current *= stride
        return stride, self.dilation


class XceptionBlock(nn.Module):
    def __init__(self, cin, outs, stride, dilation, shortcut, act_inside, bn):
        super().__init__()
        self.sep1 = SeparableConv2d(cin, outs[0], 3, bn, 1, dilation, act_inside)
        self.sep2 = SeparableConv2d(outs[0], outs[1], 3, bn, 1, dilation, act_inside)
        self.sep3 = SeparableConv2d(outs[1], outs[2], 3, bn, stride, dilation, act_inside)
        self.kind, self.act_inside = shortcut, act_inside
        if shortcut == "conv":
            self.shortcut = ConvBn(cin, outs[2], 1, bn, None, stride)

    def forward(self, x, tap=None):
        pre = (lambda t: t) if self.act_inside else F.relu
        h = self.sep1(pre(x))
        h = self.sep2(pre(h))
        if tap is not None:
            tap.append(h)
        h = self.sep3(pre(h))
        if self.kind == "conv":
            return h + self.shortcut(x)
        if self.kind == "sum":
            return h + x
        return h


class Xception71(nn.Module):
    def __init__(self, m, bn):
        super().__init__()
        w = m["width_multiplier"]
        ch = lambda c: make_divisible(c * w)  # noqa: E731
        st = StrideTracker(m["output_stride"])
        self.conv1 = ConvBn(3, ch(32), 3, bn, "relu", st.next(2)[0])
        self.conv2 = ConvBn(ch(32), ch(64), 3, bn, "relu")

        def block(cin, outs, stride, sc, act=False):
            s, d = st.next(stride)
            return XceptionBlock(ch(cin), [ch(c) for c in outs], s, d, sc, act, bn)

        self.entry1 = block(64, [128] * 3, 2, "conv")
        self.entry2 = block(128, [256] * 3, 1, "conv")
        self.entry3 = block(256, [256] * 3, 2, "conv")
        self.entry4 = block(256, [728] * 3, 1, "conv")
        self.entry5 = block(728, [728] * 3, 2, "conv")
        self.middle = nn.ModuleList([block(728, [728] * 3, 1, "sum") for _ in range(m["xception_middle_units"])])
        self.exit1 = block(728, [728, 1024, 1024], 2, "conv")
        self.exit2 = block(1024, [1536, 1536, 2048], 1, "none", True)
        self.low_level_channels, self.high_level_channels = ch(256), ch(2048)

    def forward(self, x):
        tap = []
        h = self.conv2(self.conv1(x))
        h = self.entry2(self.entry1(h))
        h = self.entry3(h, tap)
        h = self.entry5(self.entry4(h))
        for b in self.middle:
            h = b(h)
        return tap[0], self.exit2(self.exit1(h))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, t, k, stride, dilation, bn):
        super().__init__()
        self.hidden = int(round(cin * t))
        self.residual = stride == 1 and cin == cout
        if t != 1:
            self.expand = ConvBn(cin, self.hidden, 1, bn, "relu6")
        else:
            self.expand = None
        self.depthwise = ConvBn(self.hidden, self.hidden, k, bn, "relu6", stride, dilation, self.hidden)
        self.project = ConvBn(self.hidden, cout, 1, bn, None)

    def forward(self, x, tap=None):
        h = self.expand(x) if self.expand is not None else x
        h = self.depthwise(h)
        if tap is not None:
            tap.append(h)
        h = self.project(h)
        return h + x if self.residual else h


class MobileNetV2(nn.Module):
    STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1)]

    def __init__(self, m, bn):
        super().__init__()
        w, k = m["width_multiplier"], m["backbone_kernel_size"]
        st = StrideTracker(m["output_stride"])
        cin = make_divisible(32 * w)
        self.stem = ConvBn(3, cin, 3, bn, "relu6", st.next(2)[0])
        self.blocks = nn.ModuleList()
        self.low_level_block = -1
        for t, c, n, s in self.STAGES:
            cout = make_divisible(c * w)
            for i in range(n):
                stride, dil = st.next(s if i == 0 else 1)
                b = InvertedResidual(cin, cout, t, k, stride, dil, bn)
                self.blocks.append(b)
                if st.current == 4:
                    self.low_level_block = len(self.blocks) - 1
                    self.low_level_channels = b.hidden
                cin = cout
        self.high_level_channels = cin

    def forward(self, x):
        tap = []
        h = self.stem(x)
        for i, b in enumerate(self.blocks):
            h = b(h, tap if i == self.low_level_block else None)
        return tap[0], h


class ASPP(nn.Module):
    def __init__(self, cin, c, rates, bn):
        super().__init__()
        self.branch0 = ConvBn(cin, c, 1, bn)
        self.rates = list(rates)
        for i, r in enumerate(rates):
            setattr(self, f"branch{i + 1}", SeparableConv2d(cin, c, 3, bn, 1, r, True))
        self.pool = ConvBn(cin, c, 1, bn)
        self.project = ConvBn(c * (len(rates) + 2), c, 1, bn)

    def forward(self, x):
        parts = [self.branch0(x)] + [getattr(self, f"branch{i + 1}")(x) for i in range(len(self.rates))]
        p = self.pool(x.mean(dim=(2, 3), keepdim=True))
        parts.append(F.interpolate(p, size=x.shape[2:], mode="bilinear", align_corners=True))
        return self.project(torch.cat(parts, 1))


def space_to_depth(x, b):
    n, c, h, w = x.shape
    x = x.view(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)  # n, dy, dx, c, h, w
    return x.reshape(n, b * b * c, h // b, w // b)


def depth_to_space(x, b):
    n, cb, h, w = x.shape
    c = cb // (b * b)
    x = x.view(n, b, b, c, h, w).permute(0, 3, 4, 1, 5, 2)  # n, c, h, dy, w, dx
    return x.reshape(n, c, h * b, w * b)


class Decoder(nn.Module):
    def __init__(self, low_in, low_c, aspp_c, widths, k, block, bn):
        super().__init__()
        self.block = block
        self.low_level = ConvBn(low_in, low_c, 1, bn)
        cin = aspp_c + block * block * low_c
        self.n = len(widths)
        for i, wdt in enumerate(widths):
            setattr(self, f"sep{i + 1}", SeparableConv2d(cin, wdt, k, bn, 1, 1, True))
            cin = wdt

    def forward(self, low, aspp):
        b = self.block
        h4, w4 = low.shape[2:]
        hs, ws = aspp.shape[2:]
        l = self.low_level(low)
        l = space_to_depth(F.pad(l, (0, b * ws - w4, 0, b * hs - h4)), b)
        h = torch.cat([aspp, l], 1)
        for i in range(self.n):
            h = getattr(self, f"sep{i + 1}")(h)
        return depth_to_space(h, b)[:, :, :h4, :w4]


class PredictionHead(nn.Module):
    def __init__(self, cin, width, outputs, k, bn):
        super().__init__()
        self.sep = SeparableConv2d(cin, width, k, bn, 1, 1, True)
        self.conv = conv(width, outputs, 1, bias=True)

    def forward(self, x):
        return self.conv(self.sep(x))


HEAD_NAMES = ["semantic", "heatmap", "long_offsets", "short_offsets", "mid_offsets"]


class Heads(nn.Module):
    def __init__(self, cin, m, bn):
        super().__init__()
        k, wi = m["head_kernel_size"], m["instance_head_width"]
        self.semantic = PredictionHead(cin, m["semantic_head_width"], m["num_classes"], k, bn)
        self.heatmap = PredictionHead(cin, wi, NUM_KEYPOINTS, k, bn)
        self.long_offsets = PredictionHead(cin, wi, 2 * NUM_KEYPOINTS, k, bn)
        self.short_offsets = PredictionHead(cin, wi, 2 * NUM_KEYPOINTS, k, bn)
        self.mid_offsets = PredictionHead(cin, wi, 2 * NUM_EDGES, k, bn)

    def forward(self, x):
        return {n: getattr(self, n)(x) for n in HEAD_NAMES}


class DeeperLab(nn.Module):
    def __init__(self, m):
        super().__init__()
        bn = dict(eps=m["bn_eps"], momentum=m["bn_momentum"])
        if m["backbone"] == "xception71":
            self.backbone = Xception71(m, bn)
        elif m["backbone"] == "mobilenet_v2":
            self.backbone = MobileNetV2(m, bn)
        else:
            raise ValueError(f"unknown backbone {m['backbone']}")
        self.aspp = ASPP(self.backbone.high_level_channels, m["aspp_channels"], m["aspp_rates"], bn)
        block = m["output_stride"] // 4
        self.decoder = Decoder(self.backbone.low_level_channels, m["low_level_channels"], m["aspp_channels"],
                               m["decoder_widths"], m["decoder_kernel_size"], block, bn)
        self.heads = Heads(m["decoder_widths"][-1] // (block * block), m, bn)

    def forward_features(self, x):
        low, high = self.backbone(x)
        a = self.aspp(high)
        d = self.decoder(low, a)
        return dict(low_level=low, high_level=high, aspp=a, decoder=d, heads=self.heads(d))

    def forward(self, x):
        f = self.forward_features(x)
        return {n: F.interpolate(t, size=x.shape[2:], mode="bilinear", align_corners=True)
                for n, t in f["heads"].items()}


def state_for_load(model, state):
    """Checks names/shapes against the model (num_batches_tracked optional) and returns a full dict."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    bad = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
           if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise ValueError(f"state mismatch: missing {missing[:5]} unexpected {unexpected[:5]} shapes {bad[:5]}")
    full = dict(own)
    full.update({k: v.to(own[k].dtype) for k, v in state.items()})
    return full


# ---------------------------------------------------------------------------------------------
# jobs for the conformance test
def run_model_job(job):
    m = load_model_config(job["config"])
    dtype = torch.float64 if job.get("dtype", "F32") == "F64" else torch.float32
    model = DeeperLab(m).to(dtype)
    model.load_state_dict(state_for_load(model, read_safetensors(job["state"])))
    model.train(job["mode"] == "train")
    inp = read_safetensors(job["inputs"])
    x = inp["input"].to(dtype)
    f = model.forward_features(x)
    heads = {n: F.interpolate(t, size=x.shape[2:], mode="bilinear", align_corners=True)
             for n, t in f["heads"].items()}
    loss = sum((heads[n] * inp["head_weights." + n].to(dtype)).sum() for n in HEAD_NAMES)
    loss.backward()
    out = {"loss": loss.detach().reshape(())}
    for n in HEAD_NAMES:
        out["heads." + n] = heads[n]
        out["heads_stride4." + n] = f["heads"][n]
    for n in ["low_level", "high_level", "aspp", "decoder"]:
        out["features." + n] = f[n]
    for n, p in model.named_parameters():
        out["grad." + n] = p.grad
    for n, b in model.named_buffers():
        if not n.endswith("num_batches_tracked"):
            out["buffer." + n] = b
    write_safetensors(job["out"], out)


def run_torchvision_mnv2_job(job):
    """Random torchvision mobilenet_v2 (BN statistics randomised too), converted with our converter;
    features[:18] (and the low-level tap) at output stride 32 and at 16 (dilation patched in)."""
    import os
    import torchvision
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import convert_torchvision_mobilenet_v2 as conv_tv

    torch.manual_seed(job.get("seed", 0))
    tv = torchvision.models.mobilenet_v2()
    g = torch.Generator().manual_seed(1)
    for mod in tv.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.eps = job["bn_eps"]
            with torch.no_grad():
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.uniform_(-0.3, 0.3, generator=g)
                mod.running_mean.uniform_(-0.3, 0.3, generator=g)
                mod.running_var.uniform_(0.5, 1.5, generator=g)
    tv.eval()
    torch.save(tv.state_dict(), job["torch_state"])
    conv_tv.convert(job["torch_state"], job["converted"])
    x = read_safetensors(job["inputs"])["input"]
    out = {}
    feats = tv.features[:18]
    tap = []
    hook = feats[3].conv[1].register_forward_hook(lambda mod, i, o: tap.append(o))
    with torch.no_grad():
        out["os32.high_level"] = feats(x)
        out["os32.low_level"] = tap[-1]
        # Output stride 16: features[14] (first 160 unit) stride 1; its successors dilation 2.
        feats[14].conv[1][0].stride = (1, 1)
        for i in (15, 16, 17):
            c = feats[i].conv[1][0]
            c.dilation, c.padding = (2, 2), (2, 2)
        out["os16.high_level"] = feats(x)
        out["os16.low_level"] = tap[-1]
    hook.remove()
    write_safetensors(job["out"], out)


def run_timm_roundtrip_job(job):
    """Our Xception71 backbone state -> timm names (inverse table) -> torch.save -> the converter."""
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import convert_timm_xception71 as conv_timm
    state = read_safetensors(job["state"])
    prefix = "backbone."
    timm_state = {conv_timm.ours_to_timm(k[len(prefix):]): v for k, v in state.items() if k.startswith(prefix)}
    timm_state["head.fc.weight"] = torch.zeros(3, 4)  # dropped by the converter
    torch.save(timm_state, job["torch_state"])
    conv_timm.convert(job["torch_state"], job["out"])


def run_jobs(path):
    torch.set_num_threads(int(json.load(open(path)).get("threads", 1)) or 1)
    for job in json.load(open(path))["jobs"]:
        kind = job["kind"]
        if kind == "model":
            run_model_job(job)
        elif kind == "torchvision_mnv2":
            run_torchvision_mnv2_job(job)
        elif kind == "timm_roundtrip":
            run_timm_roundtrip_job(job)
        else:
            raise ValueError(f"unknown job kind {kind}")


def main(argv):
    if len(argv) == 3 and argv[1] == "run":
        run_jobs(argv[2])
    elif len(argv) == 3 and argv[1] == "params":
        model = DeeperLab(load_model_config(argv[2]))
        for n, p in model.named_parameters():
            print(f"{n:60s} {list(p.shape)}")
        print("parameters:", sum(p.numel() for p in model.parameters()))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
