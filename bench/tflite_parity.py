"""Our imported networks against Google's released TFLite files on real photos, as LiteRT runs them.

Autoseg-EdgeTPU-XS with the file's own fused tail: per-photo pixel agreement on 10 coco128 val and 10 CamVid val
photos, and the ADE20K-32 mIoU of both on the two labelled ADE20K pairs (a protocol smoke test: two images say
nothing about accuracy). EdgeTPU-DeepLab-slim (Cityscapes): per-photo pixel agreement on 20 CamVid val photos at
513, our logits resized as the file does (bilinear, corners aligned). MobileNet-EdgeTPU v1: top-1 agreement on
100 coco128 photos. The two uint8 files also with our activations rounded to the file's own 8-bit grid (what
is left then is structure, not arithmetic).

    python bench/tflite_parity.py --shared ../shared --out bench/results/tflite_parity.json
"""

from __future__ import annotations

from pathlib import Path

import torch

from common import parser  # bench/ is on the path when a bench script runs
from edgenas.data.segmentation import ade20k
from edgenas.env import write_record
from edgenas.eval.seg_metrics import SegConfusion
from edgenas.models import get_arch
from edgenas.models.tflite_check import classifier_agreement, load_photo, seg_agreement, simulate_quantization
from edgenas.models.tflite_graph import read_tflite
from edgenas.models.tflite_import import from_tflite
from edgenas.spec import count
from edgenas.nn.network import ServingTail
from edgenas.spec import Tail

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
AUTOSEG = FIXTURES / "google" / "autoseg_edgetpu_xs_fused_argmax.tflite"
MOBILENET = FIXTURES / "google" / "mobilenet_edgetpu_224_1.0_uint8.tflite"
DEEPLAB = FIXTURES / "google" / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"


def float_and_simulated(model, tflite, check):
    """``check()`` (an Agreement) in float, then with our activations on the file's 8-bit grid."""
    plain = check()
    handles = simulate_quantization(model, tflite)
    rounded = check()
    for h in handles:
        h.remove()
    return plain, rounded


def deeplab_slim(data: Path) -> dict:
    files = sorted((data / "camvid/val").glob("*.png"))[::5][:20]
    photos = [load_photo(f, 513) for f in files]
    model = from_tflite("deeplab_mobilenet_edgetpu_slim", DEEPLAB)

    def tail(logits):
        return torch.nn.functional.interpolate(logits, size=(513, 513), mode="bilinear",
                                               align_corners=True).argmax(1)

    fp, q = float_and_simulated(model, DEEPLAB, lambda: seg_agreement(model, DEEPLAB, photos, tail))
    graph = read_tflite(DEEPLAB)
    weights = sum(graph.tensors[op.inputs[1]].data.size for op in graph.convolutions())
    counts = count(get_arch("deeplab_mobilenet_edgetpu_slim"))
    return {"photos": [f.relative_to(data).as_posix() for f in files],
            "file_convs": len(graph.convolutions()), "our_convs": sum(isinstance(m, torch.nn.Conv2d)
                                                                       for m in model.modules()),
            "file_conv_weights": int(weights), "params": counts.params, "macs_513": counts.macs,
            "mean_pixel_agreement_float": fp.mean, "min_pixel_agreement_float": min(fp.per_image),
            "mean_pixel_agreement_simulated_int8": q.mean, "min_pixel_agreement_simulated_int8": min(q.per_image)}


def main() -> None:
    args = parser(__doc__, record="bench/results/tflite_parity.json", shared=True).parse_args()
    data = Path(args.shared) / "data"
    torch.set_num_threads(2)
    seg_files = sorted((data / "coco128/images/val2017").glob("*.jpg"))[:10] + \
        sorted((data / "camvid/val").glob("*.png"))[:10]
    model = from_tflite("autoseg_edgetpu_xs", AUTOSEG)
    tail = ServingTail(Tail(steps="resize256,argmax,resize512"))
    seg = seg_agreement(model, AUTOSEG, [load_photo(f, 512) for f in seg_files], tail)

    ade = ade20k(FIXTURES / "ade20k-tiny", "validation")
    pairs = sorted((FIXTURES / "ade20k-tiny/images/validation").glob("*.jpg"))
    smoke = seg_agreement(model, AUTOSEG, [load_photo(f, 512) for f in pairs], tail)
    miou = {}
    for who, maps in (("ours", smoke.ours), ("tflite", smoke.theirs)):
        conf = SegConfusion(32)
        for i, pred in enumerate(maps):
            conf.update(torch.from_numpy(pred)[None], ade[i][1][None])
        miou[who] = conf.miou() * 100

    cls_files = sorted((data / "coco128/images/val2017").glob("*.jpg"))[:64] + \
        sorted((data / "coco128/images/train2017").glob("*.jpg"))[:36]
    photos = [load_photo(f, 224) for f in cls_files]
    v1 = from_tflite("mobilenet_edgetpu_100", MOBILENET)
    fp, q = float_and_simulated(v1, MOBILENET, lambda: classifier_agreement(v1, MOBILENET, photos))
    slim = deeplab_slim(data)
    record = {
        "autoseg_xs": {"photos": [f.relative_to(data).as_posix() for f in seg_files],
                       "pixel_agreement": seg.per_image, "mean_pixel_agreement": seg.mean,
                       "min_pixel_agreement": min(seg.per_image)},
        "ade20k_32_smoke": {"pairs": [f.name for f in pairs], "miou_ours": miou["ours"],
                            "miou_tflite": miou["tflite"], "pixel_agreement": smoke.per_image},
        "mobilenet_edgetpu_v1": {"photos": len(photos), "top1_agreement_float": fp.mean,
                                 "top1_agreement_simulated_int8": q.mean},
        "deeplab_slim_cityscapes": slim,
    }
    write_record(args.out, record, threads=2)
    print(f"Autoseg-XS, fused tail, 20 real photos: pixel agreement {seg.mean:.2%} (min {min(seg.per_image):.2%})")
    print(f"ADE20K-32 smoke, 2 labelled pairs: mIoU ours {miou['ours']:.2f}%, TFLite {miou['tflite']:.2f}%")
    print(f"MobileNet-EdgeTPU v1, 100 photos: top-1 agreement {fp.mean:.0%} in float, {q.mean:.0%} with 8-bit "
          "activations simulated")
    print(f"DeepLab-slim, 20 CamVid photos: pixel agreement {slim['mean_pixel_agreement_float']:.2%} in float, "
          f"{slim['mean_pixel_agreement_simulated_int8']:.2%} with 8-bit activations simulated")


if __name__ == "__main__":
    main()
