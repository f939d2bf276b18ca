"""NumPy reference of build_targets for bench/bench_targets.cpp: the same targets (docs/LOSSES.md)
written the way a vectorised Python data loader would, timed on the scene the benchmark writes.
Usage: targets_ref.py IDS.bin SIZE INSTANCES RUNS -> prints the median milliseconds."""
import sys
import time

import numpy as np

P, E = 5, 8
EDGE_FROM = [0, 0, 0, 0, 1, 2, 3, 4]
EDGE_TO = [1, 2, 3, 4, 0, 0, 0, 0]


def build(ids, n, radius=25.0, small_area=4096, small_weight=3.0):
    h, w = ids.shape
    # segments as written by the benchmark: 1, 2 stuff (train ids 0, 1); 100 + i things (train id 2),
    # crowd when i % 10 == 9
    lut_sem = np.full(100 + n, -1, np.int32)
    lut_sem[1], lut_sem[2] = 0, 1
    lut_sem[100:] = 2
    semantic = lut_sem[ids]
    semw = (semantic >= 0).astype(np.float32)
    inst = np.full((h, w), -1, np.int32)
    kps, areas = [], []
    crowd = np.zeros((h, w), bool)
    for i in range(n):
        m = ids == 100 + i
        if i % 10 == 9:
            crowd |= m
            continue
        ys, xs = np.nonzero(m)
        if len(ys) == 0:
            continue
        j = len(kps)
        inst[m] = j
        y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
        kps.append([[ys.mean(), xs.mean()], [y0, x0], [y0, x1], [y1, x0], [y1, x1]])
        areas.append(len(ys))
        if len(ys) < small_area:
            semw[m] = small_weight
    kps = np.asarray(kps, np.float32).reshape(-1, P, 2)
    areas = np.asarray(areas, np.float64)
    hmw = ((semantic >= 0) & ~crowd).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    heat = np.zeros((P, h, w), np.float32)
    short = np.zeros((2 * P, h, w), np.float32)
    mid = np.zeros((2 * E, h, w), np.float32)
    mid_mask = np.zeros((E, h, w), np.float32)
    r2 = radius * radius
    for k in range(P):
        best = np.full((h, w), np.inf)
        owner = np.full((h, w), -1, np.int32)
        for j in range(len(kps)):
            ky, kx = kps[j, k]
            ya, yb = max(0, int(np.floor(ky - radius))), min(h - 1, int(np.ceil(ky + radius)))
            xa, xb = max(0, int(np.floor(kx - radius))), min(w - 1, int(np.ceil(kx + radius)))
            d2 = (ky - yy[ya:yb + 1, xa:xb + 1].astype(np.float64)) ** 2 + (kx - xx[ya:yb + 1, xa:xb + 1].astype(np.float64)) ** 2
            b = best[ya:yb + 1, xa:xb + 1]
            upd = (d2 <= r2) & (d2 < b) & ~crowd[ya:yb + 1, xa:xb + 1]
            b[upd] = d2[upd]
            owner[ya:yb + 1, xa:xb + 1][upd] = j
        on = owner >= 0
        heat[k] = on
        short[2 * k][on] = kps[owner[on], k, 0] - yy[on]
        short[2 * k + 1][on] = kps[owner[on], k, 1] - xx[on]
        for e in range(E):
            if EDGE_FROM[e] != k:
                continue
            mid_mask[e] = on
            mid[2 * e][on] = kps[owner[on], EDGE_TO[e], 0] - yy[on]
            mid[2 * e + 1][on] = kps[owner[on], EDGE_TO[e], 1] - xx[on]
    on = inst >= 0
    long_off = np.zeros((2 * P, h, w), np.float32)
    for k in range(P):
        long_off[2 * k][on] = kps[inst[on], k, 0] - yy[on]
        long_off[2 * k + 1][on] = kps[inst[on], k, 1] - xx[on]
    long_w = np.zeros((h, w), np.float32)
    long_w[on] = (1.0 / np.sqrt(areas))[inst[on]]
    return semantic, semw, heat, hmw, short, heat.copy(), mid, mid_mask, long_off, long_w


def main():
    path, size, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ids = np.fromfile(path, np.int32).reshape(size, size)
    times = []
    for _ in range(max(1, min(runs, 3))):  # the reference is slow: at most 3 runs
        t0 = time.perf_counter()
        build(ids, n)
        times.append((time.perf_counter() - t0) * 1e3)
    print(sorted(times)[len(times) // 2])


if __name__ == "__main__":
    main()
