#!/usr/bin/python3
"""A numpy re-implementation of the panoptic metrics, used as the reference in tests and as the
baseline in bench_eval: PQ/SQ/RQ with the semantics of cocodataset/panopticapi pq_compute
(np.unique over gt_id * 2^24 + pred_id, GT areas from the JSON, prediction areas from the PNG),
Parsing Covering with the semantics of DeepLab's parsing_covering.py, and a semantic confusion
matrix for mIoU. PNGs are read with PIL when available, else with a small numpy PNG decoder.

usage: numpy_eval.py --gt-json J [--gt-dir D] --pred-json J [--pred-dir D]
                     [--json] [--no-normalize] [--procs N] [--no-pil]
"""
import argparse
import json
import multiprocessing
import os
import struct
import sys
import time
import zlib

import numpy as np

try:
    from PIL import Image
    HAVE_PIL = True
except ImportError:  # pragma: no cover
    HAVE_PIL = False

OFFSET = 256 * 256 * 256
VOID = 0


# ---------------------------------------------------------------------------------------------
# PNG reading

def _unfilter(raw, h, w, bpp):
    stride = w * bpp
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    pos = 0
    for y in range(h):
        ftype = raw[pos]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=pos + 1).copy()
        pos += stride + 1
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub: running sum per channel, modulo 256
            cur = np.cumsum(line.reshape(w, bpp), axis=0, dtype=np.uint8).reshape(stride)
        elif ftype == 2:  # Up
            cur = line + prev
        elif ftype == 3:  # Average (sequential)
            cur = line.astype(np.int32)
            p = prev.astype(np.int32)
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                cur[i] = (cur[i] + ((left + p[i]) >> 1)) & 255
            cur = cur.astype(np.uint8)
        elif ftype == 4:  # Paeth (sequential)
            cur = line.astype(np.int32)
            p = prev.astype(np.int32)
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = p[i]
                c = p[i - bpp] if i >= bpp else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                cur[i] = (cur[i] + pred) & 255
            cur = cur.astype(np.uint8)
        else:
            raise ValueError('bad PNG filter type %d' % ftype)
        out[y] = cur
        prev = cur
    return out


def read_png_numpy(path):
    with open(path, 'rb') as f:
        data = f.read()
    if data[:8] != b'\x89PNG\r\n\x1a\n':
        raise ValueError('%s: not a PNG' % path)
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack('>I', data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b'IHDR':
            ihdr = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            idat.append(body)
        elif kind == b'IEND':
            break
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or interlace != 0 or ctype not in (0, 2, 4, 6):
        raise ValueError('%s: unsupported PNG (depth %d, color type %d, interlace %d)' % (path, depth, ctype, interlace))
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    img = _unfilter(zlib.decompress(b''.join(idat)), h, w, bpp).reshape(h, w, bpp)
    if ctype in (0, 4):
        img = np.repeat(img[..., :1], 3, axis=2)
    return img[..., :3]


def read_ids(path, use_pil):
    if use_pil:
        arr = np.array(Image.open(path).convert('RGB'), dtype=np.uint32)
    else:
        arr = read_png_numpy(path).astype(np.uint32)
    return arr[..., 0] + 256 * arr[..., 1] + 256 * 256 * arr[..., 2]


# ---------------------------------------------------------------------------------------------
# Per-image accumulation

class Stats:
    def __init__(self, cat_ids):
        self.cat_ids = list(cat_ids)
        c = len(self.cat_ids)
        self.idx = {cid: i for i, cid in enumerate(self.cat_ids)}
        self.iou = np.zeros(c)
        self.tp = np.zeros(c, dtype=np.int64)
        self.fp = np.zeros(c, dtype=np.int64)
        self.fn = np.zeros(c, dtype=np.int64)
        self.pc_w = np.zeros(c)
        self.pc_a = np.zeros(c)
        self.conf = np.zeros((c, c + 1), dtype=np.int64)
        self.images = 0

    def merge(self, o):
        for k in ('iou', 'tp', 'fp', 'fn', 'pc_w', 'pc_a', 'conf'):
            setattr(self, k, getattr(self, k) + getattr(o, k))
        self.images += o.images


def eval_image(st, gt_ann, pred_ann, gt_dir, pred_dir, normalize, use_pil):
    image_id = gt_ann['image_id']
    pan_gt = read_ids(os.path.join(gt_dir, gt_ann['file_name']), use_pil)
    pan_pred = read_ids(os.path.join(pred_dir, pred_ann['file_name']), use_pil)
    if pan_gt.shape != pan_pred.shape:
        raise ValueError('image %s: prediction %s vs ground truth %s' % (image_id, pan_pred.shape, pan_gt.shape))
    gt_segms = {el['id']: dict(el) for el in gt_ann['segments_info']}
    pred_segms = {el['id']: dict(el) for el in pred_ann['segments_info']}

    # prediction areas from the PNG, with panopticapi's sanity checks
    pred_left = set(pred_segms)
    labels, counts = np.unique(pan_pred, return_counts=True)
    for label, cnt in zip(labels, counts):
        label = int(label)
        if label not in pred_segms:
            if label == VOID:
                continue
            raise KeyError('image %s: segment %d in PNG but not in JSON' % (image_id, label))
        pred_segms[label]['area'] = int(cnt)
        pred_left.discard(label)
        if pred_segms[label]['category_id'] not in st.idx:
            raise KeyError('image %s: unknown category %d' % (image_id, pred_segms[label]['category_id']))
    if pred_left:
        raise KeyError('image %s: segments %s in JSON but not in PNG' % (image_id, sorted(pred_left)))

    pan_gt_pred = pan_gt.astype(np.uint64) * OFFSET + pan_pred.astype(np.uint64)
    labels, counts = np.unique(pan_gt_pred, return_counts=True)
    gt_pred_map = {}
    for label, inter in zip(labels, counts):
        gt_pred_map[(int(label // OFFSET), int(label % OFFSET))] = int(inter)

    # ---- PQ (panopticapi)
    gt_matched, pred_matched = set(), set()
    for (g, p), inter in gt_pred_map.items():
        if g not in gt_segms or p not in pred_segms:
            continue
        if gt_segms[g].get('iscrowd', 0) == 1:
            continue
        if gt_segms[g]['category_id'] != pred_segms[p]['category_id']:
            continue
        union = pred_segms[p]['area'] + gt_segms[g]['area'] - inter - gt_pred_map.get((VOID, p), 0)
        iou = inter / union
        if iou > 0.5:
            c = st.idx[gt_segms[g]['category_id']]
            st.tp[c] += 1
            st.iou[c] += iou
            gt_matched.add(g)
            pred_matched.add(p)
    crowd_of = {}
    for g, info in gt_segms.items():
        if g in gt_matched:
            continue
        if info.get('iscrowd', 0) == 1:
            crowd_of[info['category_id']] = g
            continue
        st.fn[st.idx[info['category_id']]] += 1
    for p, info in pred_segms.items():
        if p in pred_matched:
            continue
        inter = gt_pred_map.get((VOID, p), 0)
        if info['category_id'] in crowd_of:
            inter += gt_pred_map.get((crowd_of[info['category_id']], p), 0)
        if inter / info['area'] > 0.5:
            continue
        st.fp[st.idx[info['category_id']]] += 1

    # ---- Parsing Covering (DeepLab): GT void and crowd pixels are ignored on both sides
    def gt_valid(g):
        return g != VOID and g in gt_segms and gt_segms[g].get('iscrowd', 0) != 1
    gt_area, pc_pred_area = {}, {}
    for (g, p), inter in gt_pred_map.items():
        if not gt_valid(g):
            continue
        gt_area[g] = gt_area.get(g, 0) + inter
        pc_pred_area[p] = pc_pred_area.get(p, 0) + inter
    max_iou = {}
    for (g, p), inter in gt_pred_map.items():
        if not gt_valid(g) or p == VOID:
            continue
        if gt_segms[g]['category_id'] != pred_segms[p]['category_id']:
            continue
        iou = inter / (gt_area[g] + pc_pred_area[p] - inter)
        max_iou[g] = max(max_iou.get(g, 0.0), iou)
    norm = float(pan_gt.size) if normalize else 1.0
    for g, area in gt_area.items():
        c = st.idx[gt_segms[g]['category_id']]
        st.pc_w[c] += max_iou.get(g, 0.0) * (area / norm)
        st.pc_a[c] += area / norm

    # ---- semantic confusion over non-void GT pixels; last column = predicted void
    ncat = len(st.cat_ids)
    for (g, p), inter in gt_pred_map.items():
        if g == VOID:
            continue
        row = st.idx[gt_segms[g]['category_id']]
        col = ncat if p == VOID else st.idx[pred_segms[p]['category_id']]
        st.conf[row, col] += inter
    st.images += 1


def _worker(args):
    cat_ids, chunk, gt_dir, pred_dir, normalize, use_pil = args
    st = Stats(cat_ids)
    for gt_ann, pred_ann in chunk:
        eval_image(st, gt_ann, pred_ann, gt_dir, pred_dir, normalize, use_pil)
    return st


def summarize(st, categories):
    per_class = {}
    splits = {'all': [], 'things': [], 'stuff': []}
    pcs = {'all': [], 'things': [], 'stuff': []}
    ious = []
    ncat = len(st.cat_ids)
    for i, cid in enumerate(st.cat_ids):
        tp, fp, fn, iou = int(st.tp[i]), int(st.fp[i]), int(st.fn[i]), float(st.iou[i])
        entry = {'tp': tp, 'fp': fp, 'fn': fn, 'iou_sum': iou, 'pq': 0.0, 'sq': 0.0, 'rq': 0.0,
                 'pq_valid': tp + fp + fn > 0, 'pc': None, 'iou': None}
        thing = categories[cid].get('isthing', 0) == 1
        keys = ['all', 'things' if thing else 'stuff']
        if tp + fp + fn > 0:
            den = tp + 0.5 * fp + 0.5 * fn
            entry['pq'] = iou / den
            entry['sq'] = iou / tp if tp else 0.0
            entry['rq'] = tp / den
            for k in keys:
                splits[k].append((entry['pq'], entry['sq'], entry['rq']))
        if st.pc_a[i] != 0:
            entry['pc'] = float(st.pc_w[i] / st.pc_a[i])
            for k in keys:
                pcs[k].append(entry['pc'])
        row = int(st.conf[i, :].sum())
        col = int(st.conf[:, i].sum())
        tpc = int(st.conf[i, i])
        if row + col - tpc > 0:
            entry['iou'] = tpc / (row + col - tpc)
            ious.append(entry['iou'])
        per_class[str(cid)] = entry

    def split(k):
        v = np.array(splits[k]).reshape(-1, 3)
        n = len(splits[k])
        res = {'pq': float(v[:, 0].mean()) if n else 0.0, 'sq': float(v[:, 1].mean()) if n else 0.0,
               'rq': float(v[:, 2].mean()) if n else 0.0, 'n': n,
               'pc': float(np.mean(pcs[k])) if pcs[k] else 0.0, 'pc_n': len(pcs[k])}
        return res
    out = split('all')
    out['things'] = split('things')
    out['stuff'] = split('stuff')
    out['miou'] = float(np.mean(ious)) if ious else 0.0
    out['miou_n'] = len(ious)
    total = int(st.conf[:, :].sum())
    out['pixel_accuracy'] = float(np.trace(st.conf[:, :ncat]) / total) if total else 0.0
    out['images'] = st.images
    out['per_class'] = per_class
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--gt-json', required=True)
    ap.add_argument('--gt-dir')
    ap.add_argument('--pred-json', required=True)
    ap.add_argument('--pred-dir')
    ap.add_argument('--json', action='store_true')
    ap.add_argument('--no-normalize', action='store_true')
    ap.add_argument('--procs', type=int, default=1)
    ap.add_argument('--no-pil', action='store_true')
    a = ap.parse_args()
    start = time.time()
    with open(a.gt_json) as f:
        gt = json.load(f)
    with open(a.pred_json) as f:
        pred = json.load(f)
    def default_dir(path):
        return path[:-5] if path.endswith('.json') and len(path) > 5 else path + '.d'
    gt_dir = a.gt_dir or default_dir(a.gt_json)
    pred_dir = a.pred_dir or default_dir(a.pred_json)
    categories = {el['id']: el for el in gt['categories']}
    cat_ids = [el['id'] for el in gt['categories']]
    preds = {el['image_id']: el for el in pred['annotations']}
    pairs = []
    for g in gt['annotations']:
        if g['image_id'] not in preds:
            raise KeyError('no prediction for image %s' % g['image_id'])
        pairs.append((g, preds[g['image_id']]))
    use_pil = HAVE_PIL and not a.no_pil
    procs = max(1, min(a.procs, len(pairs)))
    chunks = [pairs[i::procs] for i in range(procs)]
    args = [(cat_ids, c, gt_dir, pred_dir, not a.no_normalize, use_pil) for c in chunks]
    if procs == 1:
        parts = [_worker(args[0])]
    else:
        with multiprocessing.Pool(procs) as pool:
            parts = pool.map(_worker, args)
    st = Stats(cat_ids)
    for p in parts:
        st.merge(p)
    out = summarize(st, categories)
    out['seconds'] = time.time() - start
    out['png_reader'] = 'PIL' if use_pil else 'numpy'
    if a.json:
        print(json.dumps(out))
    else:
        print('%-10s| %5s  %5s  %5s %5s | %5s' % ('', 'PQ', 'SQ', 'RQ', 'N', 'PC'))
        for name, s in (('All', out), ('Things', out['things']), ('Stuff', out['stuff'])):
            print('%-10s| %5.1f  %5.1f  %5.1f %5d | %5.1f' % (name, 100 * s['pq'], 100 * s['sq'], 100 * s['rq'],
                                                            s['n'], 100 * s['pc']))
        print('mIoU %.1f, pixel accuracy %.1f, %d images, %.2f s' % (100 * out['miou'], 100 * out['pixel_accuracy'],
                                                                      out['images'], out['seconds']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
