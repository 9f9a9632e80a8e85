"""Train the project's small test detector on generated shapes and export it to ONNX.

Weights cannot be downloaded here, and tests need a detector whose right answers are known. This
trains yolo11n from its config (random init) on `kinase_cli.workflows.samples.shapes_dataset`, the same
renderer that makes the test videos, then writes models/shapes-yolo11n.pt and .onnx and records
the validation metrics in models/README.md.

    nice .venv/bin/python scripts/train_shapes.py                 # ~30-40 min on 2 CPU cores
    nice .venv/bin/python scripts/train_shapes.py --epochs 2 --train 40 --val 10 --out /tmp/m  # smoke run
    .venv/bin/python scripts/train_shapes.py --from-run /tmp/kinase-shapes-XXXX   # finish an interrupted run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _ultralytics_args(args: argparse.Namespace, data: Path, work: Path) -> dict:
    """What training and validation share, so the metrics are measured on the data, size and device it trained with."""
    return dict(
        data=str(data),
        imgsz=args.imgsz,
        batch=args.batch,
        device="cpu",
        workers=0,
        plots=False,
        verbose=False,
        project=str(work / "runs"),
        exist_ok=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=600, help="training images")
    parser.add_argument("--val", type=int, default=120, help="validation images")
    parser.add_argument("--epochs", type=int, default=35)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "models")
    parser.add_argument(
        "--from-run",
        type=Path,
        metavar="WORK_DIR",
        help="skip training: validate, export and record the best weights of an interrupted run "
        "(its kinase-shapes-* work folder, which holds data/ and runs/shapes/)",
    )
    args = parser.parse_args()

    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import strip_optimizer

    from kinase_cli.workflows.samples import CLASSES, shapes_dataset

    started = time.time()
    if args.from_run:
        work = args.from_run
        data = work / "data" / "data.yaml"
        best = work / "runs" / "shapes" / "weights" / "best.pt"
    else:
        work = Path(tempfile.mkdtemp(prefix="kinase-shapes-"))
        print(f"work folder: {work}", flush=True)
        data = shapes_dataset(work / "data", train=args.train, val=args.val, imgsz=args.imgsz, seed=args.seed)
        model = YOLO("yolo11n.yaml")
        model.train(
            **_ultralytics_args(args, data, work),
            name="shapes",
            epochs=args.epochs,
            amp=False,
            pretrained=False,
            seed=args.seed,
            deterministic=True,
            mosaic=1.0,
            close_mosaic=5,
            patience=100,
        )
        best = Path(model.trainer.best)
    import torch

    checkpoint = torch.load(best, map_location="cpu", weights_only=False)
    epochs_done = int(checkpoint.get("epoch", -1)) + 1 if checkpoint.get("epoch", -1) >= 0 else args.epochs
    planned = int((checkpoint.get("train_args") or {}).get("epochs", args.epochs))
    strip_optimizer(str(best))
    trained = YOLO(str(best))
    metrics = trained.val(**_ultralytics_args(args, data, work), name="val")
    per_class = {CLASSES[i]: round(float(v), 4) for i, v in enumerate(metrics.box.maps[: len(CLASSES)])}
    onnx_path = Path(trained.export(format="onnx", imgsz=args.imgsz, opset=17, simplify=True, dynamic=False))
    minutes = (time.time() - started) / 60
    run_time = (
        f"{minutes:.0f} min"
        if not args.from_run
        else f"stopped after epoch {epochs_done} of {planned} planned (2 CPU cores shared with other work made epochs slow; "
        f"mAP50 had reached the level below)"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, args.out / "shapes-yolo11n.pt")
    shutil.copyfile(onnx_path, args.out / "shapes-yolo11n.onnx")
    summary = {
        "map50": round(float(metrics.box.map50), 4),
        "map50_95": round(float(metrics.box.map), 4),
        "precision": round(float(metrics.box.mp), 4),
        "recall": round(float(metrics.box.mr), 4),
        "map50_95_per_class": per_class,
    }
    (args.out / "README.md").write_text(
        README.format(
            train=args.train,
            val=args.val,
            epochs=epochs_done,
            imgsz=args.imgsz,
            batch=args.batch,
            seed=args.seed,
            run_time=run_time,
            date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            pt_mb=(args.out / "shapes-yolo11n.pt").stat().st_size / 1e6,
            onnx_mb=(args.out / "shapes-yolo11n.onnx").stat().st_size / 1e6,
            metrics=json.dumps(summary, indent=2),
            classes=", ".join(CLASSES),
        )
    )
    print(json.dumps(summary))
    if not args.from_run:
        shutil.rmtree(work, ignore_errors=True)
    return 0


README = """# Test models

`shapes-yolo11n.pt` and `shapes-yolo11n.onnx`: YOLO11n trained from scratch (config `yolo11n.yaml`,
no pretrained weights) on generated images of shapes on textured backgrounds, classes
{classes}. Tests and the offline demo use them because the generated test videos carry exact ground
truth (`kinase_cli.workflows.samples.shapes_video`). They are not a general-purpose detector.

Made by `scripts/train_shapes.py` on {date}: {train} training / {val} validation images from
`kinase_cli.workflows.samples.shapes_dataset(seed={seed})`, {epochs} epochs, imgsz {imgsz}, batch {batch}, on the CPU
(2 cores): {run_time}. ONNX: opset 17, static {imgsz}x{imgsz} input, simplified; class names in
the model metadata. Sizes: .pt {pt_mb:.1f} MB, .onnx {onnx_mb:.1f} MB.

Validation metrics (best epoch, on the generated validation set):

```json
{metrics}
```
"""


if __name__ == "__main__":
    raise SystemExit(main())
