"""PyTorch port of the DeeperLab post-processing for bench/bench_fusion.cpp: the same algorithm
(docs/INFERENCE.md) written the way a careful public port would, vectorised tensor ops throughout
(refinement and voting by gather / index_add_, local maxima by max_pool2d, candidate expansion
batched, pixel assignment by chunked cdist), with only the sequential rejection / NMS loop in Python.
Usage: fusion_ref.py RAW H W K THING_IDS RUNS [cpu|cuda] -> one line with the median milliseconds.
RAW holds float32 semantic [K,H,W], heatmap [5,H,W], long [10,H,W], short [10,H,W], mid [16,H,W]."""
import math
import sys
import time

import torch
import torch.nn.functional as F

P = 5
EDGE_TO = [1, 2, 3, 4, 0, 0, 0, 0]


def sample2(field, py, px):
    """Bilinear sample of a [2, H, W] field at float positions (clamped to the image)."""
    h, w = field.shape[-2:]
    py = py.clamp(0, h - 1)
    px = px.clamp(0, w - 1)
    y0f, x0f = py.floor(), px.floor()
    ty, tx = py - y0f, px - x0f
    y0, x0 = y0f.long(), x0f.long()
    y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
    f = field.reshape(2, -1)
    return (f[:, y0 * w + x0] * ((1 - ty) * (1 - tx)) + f[:, y0 * w + x1] * ((1 - ty) * tx) +
            f[:, y1 * w + x0] * (ty * (1 - tx)) + f[:, y1 * w + x1] * (ty * tx))


def splat(acc, py, px, wgt, h, w):
    y0f, x0f = py.floor(), px.floor()
    ty, tx = py - y0f, px - x0f
    y0, x0 = y0f.long(), x0f.long()
    for dy, wy in ((0, 1 - ty), (1, ty)):
        for dx, wx in ((0, 1 - tx), (1, tx)):
            yy, xx = y0 + dy, x0 + dx
            m = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            acc.index_add_(0, (yy * w + xx)[m], (wgt * wy * wx)[m])


def decode(sem, heat, lng, shrt, mid, isthing, radius=25.0, steps=2, thr=0.01, nms_r=10.0, iou_thr=0.5, minw=0.01):
    dev = sem.device
    k_classes, h, w = sem.shape
    labels = sem.argmax(0)
    thing = isthing[labels]
    ys, xs = torch.meshgrid(torch.arange(h, device=dev, dtype=torch.float32),
                            torch.arange(w, device=dev, dtype=torch.float32), indexing="ij")
    acc = torch.zeros(P, h * w, device=dev)
    ty, tx = ys[thing], xs[thing]
    refined = []
    for k in range(P):
        m = lng[2 * k:2 * k + 2][:, thing]
        for _ in range(steps):
            m = m + sample2(shrt[2 * k:2 * k + 2], ty + m[0], tx + m[1])
        refined.append(m)
        splat(acc[k], ty + m[0], tx + m[1], torch.ones_like(ty), h, w)
    hm = torch.sigmoid(heat)
    for k in range(P):
        sel = hm[k] >= minw
        splat(acc[k], ys[sel] + shrt[2 * k][sel], xs[sel] + shrt[2 * k + 1][sel], hm[k][sel], h, w)
    score = (acc / (math.pi * radius * radius)).view(P, h, w)
    mx = F.max_pool2d(score[None], 3, 1, 1)[0]
    kk, cy, cx = ((score >= mx) & (score > thr)).nonzero(as_tuple=True)
    cs = score[kk, cy, cx]
    order = cs.argsort(descending=True)
    kk, cy, cx, cs = kk[order], cy[order], cx[order], cs[order]
    # Batched star-graph expansion of every candidate.
    n = kk.numel()
    kp = torch.zeros(n, P, 2, device=dev)
    kp[torch.arange(n, device=dev), kk] = torch.stack([cy, cx], 1).float()

    def follow(e, qy, qx):
        iy = qy.clamp(0, h - 1).round().long()
        ix = qx.clamp(0, w - 1).round().long()
        m = mid[2 * e:2 * e + 2][:, iy, ix]
        l = EDGE_TO[e]
        for _ in range(steps):
            m = m + sample2(shrt[2 * l:2 * l + 2], iy + m[0], ix + m[1])
        return torch.stack([(iy + m[0]).clamp(0, h - 1), (ix + m[1]).clamp(0, w - 1)], 1)

    for k in range(1, P):
        sel = kk == k
        if sel.any():
            kp[sel, 0] = follow(k + 3, cy[sel].float(), cx[sel].float())
    for j in range(1, P):
        sel = kk != j
        kp[sel, j] = follow(j - 1, kp[sel, 0, 0], kp[sel, 0, 1])
    ri = kp.round().long()
    kscore = score[torch.arange(P, device=dev)[None, :].expand(n, P), ri[..., 0], ri[..., 1]].mean(1)
    # Sequential rejection and box NMS (host).
    kp_c, kk_c, cy_c, cx_c, ks_c = kp.cpu(), kk.tolist(), cy.tolist(), cx.tolist(), kscore.cpu()
    found = []
    for c in range(n):
        k = kk_c[c]
        if any((f[k, 0] - cy_c[c]) ** 2 + (f[k, 1] - cx_c[c]) ** 2 <= nms_r * nms_r for f, _ in found):
            continue
        found.append((kp_c[c], float(ks_c[c])))
    found.sort(key=lambda t: -t[1])
    kept = []
    for f, s in found:
        b = (f[:, 0].min(), f[:, 1].min(), f[:, 0].max(), f[:, 1].max())
        a = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
        ok = True
        for o in kept:
            ih = min(b[2], o[2]) - max(b[0], o[0]) + 1
            iw = min(b[3], o[3]) - max(b[1], o[1]) + 1
            if ih > 0 and iw > 0:
                inter = ih * iw
                if inter / (a + (o[2] - o[0] + 1) * (o[3] - o[1] + 1) - inter) > iou_thr:
                    ok = False
                    break
        if ok:
            kept.append((*b, f))
    ninst = len(kept)
    owner = labels.clone()
    if ninst:
        q = torch.stack([t[4] for t in kept]).to(dev)  # [n, P, 2]
        pts = torch.stack([torch.stack([ty + refined[k][0], tx + refined[k][1]], 1) for k in range(P)], 1)  # [N, P, 2]
        best = torch.empty(pts.shape[0], dtype=torch.long, device=dev)
        for s in range(0, pts.shape[0], 1 << 18):
            p = pts[s:s + (1 << 18)]
            d = sum(torch.cdist(p[:, k].contiguous(), q[:, k].contiguous()) for k in range(P))
            best[s:s + p.shape[0]] = d.argmin(1)
        owner[thing] = k_classes + best
    else:
        owner[thing] = -1
    valid = owner >= 0
    o = owner[valid]
    area = torch.bincount(o, minlength=k_classes + ninst)
    votes = torch.bincount((o - k_classes).clamp(min=0) * k_classes + labels[valid],
                           weights=(o >= k_classes).float(), minlength=max(ninst, 1) * k_classes)
    inst_class = votes.view(-1, k_classes)[:ninst].argmax(1)
    yy, xx = ys[valid].long(), xs[valid].long()
    y0 = torch.full((k_classes + ninst,), h, device=dev, dtype=torch.long).scatter_reduce(0, o, yy, "amin")
    y1 = torch.full((k_classes + ninst,), -1, device=dev, dtype=torch.long).scatter_reduce(0, o, yy, "amax")
    x0 = torch.full((k_classes + ninst,), w, device=dev, dtype=torch.long).scatter_reduce(0, o, xx, "amin")
    x1 = torch.full((k_classes + ninst,), -1, device=dev, dtype=torch.long).scatter_reduce(0, o, xx, "amax")
    keep = (area > 0) & torch.cat([~isthing, torch.ones(ninst, dtype=torch.bool, device=dev)])
    ids_of = torch.zeros(k_classes + ninst, dtype=torch.long, device=dev)
    ids_of[keep] = torch.arange(1, int(keep.sum()) + 1, device=dev)
    ids = torch.where(valid, ids_of[owner.clamp(min=0)], torch.zeros_like(owner))
    segs = list(zip(ids_of[keep].tolist(), area[keep].tolist(), y0[keep].tolist(), x0[keep].tolist(),
                    y1[keep].tolist(), x1[keep].tolist()))
    return ids.cpu(), segs, inst_class.cpu()


def main():
    raw, h, w, k, things, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
    dev = torch.device(sys.argv[7] if len(sys.argv) > 7 else "cpu")
    data = torch.from_file(raw, size=(k + 5 + 10 + 10 + 16) * h * w, dtype=torch.float32).view(-1, h, w)
    sem, heat, lng, shrt, mid = torch.split(data, [k, 5, 10, 10, 16])
    sem, heat, lng, shrt, mid = (t.contiguous().to(dev) for t in (sem, heat, lng, shrt, mid))
    isthing = torch.zeros(k, dtype=torch.bool, device=dev)
    for t in things.split(","):
        isthing[int(t)] = True
    times = []
    with torch.no_grad():
        for _ in range(runs + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            ids, segs, _ = decode(sem, heat, lng, shrt, mid, isthing)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
    times = sorted(times[1:])
    print(f"total {times[len(times) // 2]:.1f} ms (median of {runs}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {dev.type}); {len(segs)} segments")


if __name__ == "__main__":
    main()
