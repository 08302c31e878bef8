"""``cnnlab viz``: pictures of a network as PNG/GIF files.

``filters MODEL_OR_RUN``, ``features MODEL_OR_RUN --image IMG``, ``edges IMG``, ``rf MODEL_OR_RUN --layer
NAME --image IMG``, ``gradcam MODEL_OR_RUN --image IMG`` and ``animate conv|transposed|pool --input N --kernel
K ...``. MODEL_OR_RUN is a run directory of ``cnnlab train`` or any TARGET of ``cnnlab inspect`` (registered
name, spec file, ``file.py:factory``); IMG is an image file or a test image written ``DATASET:INDEX``
(``fashion-mnist:0``; ``--data-dir`` says where its files lie). Pictures of a run go to ``RUN/viz/``
unless ``--out`` says otherwise; the others go to the current folder. Every command prints the paths it wrote.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnlab.cli._values import negative_value_parser

NAME = "viz"
HELP = "Pictures: kernels, feature maps, edges, receptive fields, Grad-CAM, conv-arithmetic animations."

_IMAGE_HELP = "image file (PNG/JPEG/...) or a dataset test image DATASET:INDEX, e.g. fashion-mnist:0"


_TARGET_HELP = (
    "run directory of `cnnlab train` (or its .safetensors), registered model name, spec file or file.py:factory "
    "(a model that is not a run has no class names and takes images scaled to 0..1)"
)

_DATA_DIR_HELP = "folder holding the dataset files of DATASET:INDEX images (default: $CNNLAB_DATA, then the cache)"


def _image_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--image", required=required, metavar="IMG", help=_IMAGE_HELP)
    p.add_argument("--data-dir", metavar="DIR", help=_DATA_DIR_HELP)
    p.add_argument(
        "--no-convert", action="store_true", help="refuse images whose channel count differs from the model's"
    )
    p.add_argument("--keep-size", action="store_true", help="do not resize the image to the model's input size")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # --unit -1,0 reaches the ROW,COL check (argparse read it as an option: "expected one argument")
    sub = parser.add_subparsers(
        dest="picture", metavar="PICTURE", required=True, parser_class=negative_value_parser(["--unit"])
    )

    p = sub.add_parser("filters", help="grid of a conv layer's kernels (default: the first layer)")
    p.add_argument("model", metavar="MODEL_OR_RUN", help=_TARGET_HELP)
    p.add_argument("--layer", help="name of a Conv2d layer (default: the first)")
    p.add_argument(
        "--mode", default="auto", choices=["auto", "rgb", "channels"],
        help="tile per filter or per channel (default auto)",
    )  # fmt: skip
    p.add_argument("--out", help="PNG file (default: RUN/viz/filters-LAYER.png or ./filters-LAYER.png)")

    p = sub.add_parser("features", help="feature maps of one image, before and after each activation")
    p.add_argument("model", metavar="MODEL_OR_RUN", help=_TARGET_HELP)
    _image_options(p)
    p.add_argument(
        "--layers",
        nargs="+",
        metavar="NAME",
        help="module names, layers or blocks such as layer1.0 (default: every spatial activation)",
    )
    p.add_argument("--max-maps", type=int, default=32, help="maps drawn per layer (default 32)")
    p.add_argument("--out", help="PNG file (default: RUN/viz/features.png or ./features.png)")

    p = sub.add_parser("edges", help="vertical/horizontal, Sobel and Scharr edge kernels applied to an image")
    p.add_argument("image", metavar="IMG", help=_IMAGE_HELP)
    p.add_argument("--data-dir", metavar="DIR", help=_DATA_DIR_HELP)
    p.add_argument(
        "--kernels", nargs="+", metavar="NAME",
        help="kernels to apply, any of vertical horizontal sobel_x sobel_y scharr_x scharr_y prewitt_x prewitt_y "
        "laplacian (default: the first six)",
    )  # fmt: skip
    p.add_argument("--out", help="PNG file (default: ./edges.png)")

    p = sub.add_parser("rf", help="theoretical and effective receptive field of one unit, side by side")
    p.add_argument("model", metavar="MODEL_OR_RUN", help=_TARGET_HELP)
    p.add_argument("--layer", required=True, help="module (a layer or a block such as layer1) whose unit is shown")
    _image_options(p)
    p.add_argument("--unit", help="ROW,COL of the unit in the layer's output (default: the centre)")
    p.add_argument("--mass", type=float, default=0.95, help="gradient mass the ERF radius holds (default 0.95)")
    p.add_argument("--out", help="PNG file (default: RUN/viz/rf-LAYER.png or ./rf-LAYER.png)")

    p = sub.add_parser("gradcam", help="Grad-CAM and saliency of one image")
    p.add_argument("model", metavar="MODEL_OR_RUN", help=_TARGET_HELP)
    _image_options(p)
    p.add_argument(
        "--layer", help="module to explain (default: the last spatial layer; segmentation: the bottleneck)"
    )
    p.add_argument(
        "--target",
        help="class index or name (default: the predicted class; segmentation: the largest predicted non-background)",
    )
    p.add_argument("--out", help="PNG file (default: RUN/viz/gradcam.png or ./gradcam.png)")

    p = sub.add_parser("animate", help="GIF of a kernel sliding over the padded input (Dumoulin & Visin)")
    p.add_argument("kind", choices=["conv", "transposed", "pool"], help="operation to animate")
    p.add_argument("--input", type=int, default=5, metavar="N", help="input side (default 5)")
    p.add_argument("--kernel", type=int, default=3, metavar="K", help="kernel side (default 3)")
    p.add_argument("--stride", type=int, default=1, metavar="S", help="stride (default 1)")
    p.add_argument("--padding", type=int, default=0, metavar="P", help="zero padding (default 0)")
    p.add_argument("--dilation", type=int, default=1, metavar="D", help="dilation (default 1)")
    p.add_argument("--output-padding", type=int, default=0, metavar="OP", help="transposed only (default 0)")
    p.add_argument(
        "--frames-dir", metavar="DIR", help="also write every frame as PNG into DIR (its old frame_*.png are replaced)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the example values")
    p.add_argument("--out", help="GIF file (default: ./KIND-nN-kK-sS-pP-dD.gif, with -opOP for --output-padding)")


def _default_out(args: argparse.Namespace, run_dir: Path | None, name: str, suffix: str = ".png") -> Path:
    """``--out`` or the default path, checked before any work (a folder, a file's child, an unwritable place)."""
    from cnnlab.viz.outpath import check_out_file

    path = Path(args.out) if args.out else (run_dir / "viz" / name) if run_dir is not None else Path(name)
    out = check_out_file(path, suffixes=(suffix,), given=bool(args.out))
    image = getattr(args, "image", None)
    if image is not None and out.exists() and Path(image).expanduser().exists() and out.samefile(image):
        # the picture would replace the user's own image before anything else could be done
        option = "--image" if args.picture != "edges" else "IMG"
        subject = f"--out {str(out)!r}" if args.out else f"the default output {str(out)!r} (no --out given)"
        raise ValueError(
            f"{subject} is the {option} file itself; writing the picture there would replace your image. "
            f"Choose another file, e.g. --out {out.with_name(out.stem + '-' + args.picture + suffix)}."
        )
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def _model(args: argparse.Namespace) -> Any:
    """The model source of MODEL_OR_RUN; a model that is not a trained run is named as such."""
    from cnnlab.viz.sources import load_model_source

    src = load_model_source(args.model, allow_untrained=True)
    if src.run_dir is None:
        weights = (
            "its weights are freshly initialised (random)"
            if src.weights == "untrained model"
            else f"its weights are the ones {src.weights.removeprefix('weights from ')} returned"
        )
        print(
            f"note: {args.model} is a model, not a run of `cnnlab train`: {weights}, it has no class names, "
            "and it takes images scaled to 0..1."
        )
    return src


def _picture(args: argparse.Namespace, src: Any) -> Any:
    from cnnlab.viz.sources import load_picture

    size = None if args.keep_size or not src.input_size else tuple(src.input_size[1:])
    pic = load_picture(
        args.image, channels=src.in_chans, size=size, convert=not args.no_convert, data_dir=args.data_dir
    )
    for note in pic.notes:
        print(f"note: {note}")
    if not src.input_size:  # nothing to resize to: if the model needs another size, the error says so
        args.undeclared_size = (src.name, tuple(pic.image.shape[1:]), Path(str(args.model)).suffix.lower())
    if pic.resized_from is not None:
        h, w = pic.resized_from
        th, tw = size  # type: ignore[misc]
        stretched = abs((h / w) / (th / tw) - 1) > 0.05
        print(
            f"note: resized {args.image} from {h}x{w} to {th}x{tw} (HxW), the model's input size"
            + ("; the aspect ratio changed (pass --keep-size for fully convolutional models)" if stretched else "")
        )
    return pic


def _filters(args: argparse.Namespace) -> int:
    from cnnlab.viz.filters import MAX_TILES, find_conv, kernel_grid
    from cnnlab.viz.grid import save_png

    src = _model(args)
    name, conv = find_conv(src.model, args.layer)
    target = _default_out(args, src.run_dir, f"filters-{_safe(name)}.png")
    grid = kernel_grid(conv.weight, mode=args.mode)
    out = save_png(grid.image, target)
    shape = "x".join(str(v) for v in conv.weight.shape)
    print(f"layer {name}: weight {shape}, {grid.tiles} tiles in {grid.rows}x{grid.cols}, each normalised on its own")
    o, i = conv.weight.shape[:2]
    per_filter = args.mode == "rgb" or (args.mode == "auto" and i in (1, 3))  # else one tile per channel
    if grid.tiles < (o if per_filter else o * i):
        print(f"note: only the first {grid.tiles // i} of {o} filters are drawn (the grid stops at {MAX_TILES} tiles)")
    print(f"wrote {out} ({grid.image.shape[1]}x{grid.image.shape[0]} px)")
    return 0


def _features(args: argparse.Namespace) -> int:
    from cnnlab.viz.features import MAX_MAP_SIDE, feature_figure, feature_stages

    if args.max_maps < 1:
        raise ValueError(f"--max-maps must be at least 1; received {args.max_maps}.")
    src = _model(args)
    out = _default_out(args, src.run_dir, "features.png")
    pic = _picture(args, src)
    stages = feature_stages(src.model, src.preprocess(pic.image), args.layers)
    picture = feature_figure(stages, out, max_maps=args.max_maps)
    for s in stages:
        print(_stage_line(s))
    side = max(max(s.pre.shape[1:]) for s in stages)
    if side > MAX_MAP_SIDE:
        print(f"note: maps larger than {MAX_MAP_SIDE} px (the largest has {side} px) are averaged down to that size")
    print(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]} px, {len(stages)} layers)")
    return 0


def _stage_line(s: Any) -> str:
    def shape(t: Any) -> str:
        return "x".join(str(v) for v in t.shape)

    if not s.pre_is_output:  # an activation: its input and output
        return f"{s.name} ({s.type}): before {shape(s.pre)}, after activation {shape(s.post)}"
    after = "" if s.post is None else f", after activation {s.activation} {shape(s.post)}"
    return f"{s.name} ({s.type}): output {shape(s.pre)}{after}"


def _edges(args: argparse.Namespace) -> int:
    from cnnlab.viz.edges import edge_figure, edge_responses, stretched
    from cnnlab.viz.sources import load_picture

    out = _default_out(args, None, "edges.png")
    pic = load_picture(args.image, data_dir=args.data_dir)
    for note in pic.notes:
        print(f"note: {note}")
    picture = edge_figure(pic.image, out, args.kernels)
    for name, r in edge_responses(pic.image, args.kernels).items():
        across = name in ("vertical", "sobel_x", "scharr_x", "prewitt_x")  # these answer to changes along a row
        where = int(r.abs().sum(0 if across else 1).argmax()) + 1  # output index i is centred on input i + 1
        strongest = f"strongest {'column' if across else 'row'} {where}" if r.abs().max() > 0 else "no edges"
        print(f"{name:>10}: max |response| {float(r.abs().max()):8.1f}, {strongest}")
    if stretched(pic.image):
        h, w = pic.image.shape[-2:]
        print(f"note: the image is {h}x{w} (HxW); its panels are stretched to fill the picture")
    label = f" ({pic.label})" if pic.label else ""
    print(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]} px) for {args.image}{label}")
    return 0


def _unit(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
        raise ValueError(f"--unit must be ROW,COL (two integers); received {text!r}. Example: --unit 3,4.")
    return int(parts[0]), int(parts[1])


def _rf(args: argparse.Namespace) -> int:
    from cnnlab.viz.rf import receptive_field, rf_figure

    if not 0 < args.mass <= 1:
        raise ValueError(f"--mass must be a fraction in (0, 1]; received {args.mass}. Example: --mass 0.95.")
    src = _model(args)
    out = _default_out(args, src.run_dir, f"rf-{_safe(args.layer)}.png")
    pic = _picture(args, src)
    rf = receptive_field(src.model, args.layer, src.preprocess(pic.image), unit=_unit(args.unit), mass=args.mass)
    picture = rf_figure(pic.image, rf, out)
    top, left, bottom, right = rf.box
    made_by = f" (a container; its output is made by {rf.made_by})" if rf.made_by != rf.layer else ""
    print(f"{src.name} ({src.weights}), layer {rf.layer}{made_by}, unit {rf.unit} centred at input pixel {rf.centre}")
    print(
        f"theoretical RF: {rf.size[0]}x{rf.size[1]} px (jump {rf.jump[0]:g}), "
        f"box rows {top}..{bottom}, cols {left}..{right}"
    )
    ratio = rf.erf_size / max(rf.size)
    print(
        f"effective RF: {rf.mass:.0%} of the gradient mass within radius {rf.erf_radius:.1f} px "
        f"(a {rf.erf_size}x{rf.erf_size} px square, {ratio:.2f} of the theoretical side)"
    )
    print(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]} px)")
    return 0


def _target_class(text: str | None, classes: list[str]) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    if text in classes:
        return classes.index(text)
    raise ValueError(
        f"--target must be a class index or one of the run's class names; received {text!r}. "
        f"Classes: {', '.join(classes) or '(none recorded)'}."
    )


def _gradcam(args: argparse.Namespace) -> int:
    from cnnlab.viz.gradcam import grad_cam, gradcam_figure

    src = _model(args)
    out = _default_out(args, src.run_dir, "gradcam.png")
    pic = _picture(args, src)
    res = grad_cam(
        src.model, src.preprocess(pic.image), target=_target_class(args.target, src.classes), layer=args.layer
    )
    picture = gradcam_figure(pic.image, res, src.classes, out)
    name = src.classes[res.target] if res.target < len(src.classes) else str(res.target)
    truth = f" (true label: {pic.label})" if pic.label else ""
    h, w = res.raw_cam.shape
    if res.region is not None:  # Seg-Grad-CAM: the class's logit summed over its predicted pixels
        n = int(res.region.sum())
        where = (
            f"summed over the {n} pixels predicted as it ({float(res.probs[res.target]):.1%} of the map)"
            if float(res.probs[res.target]) > 0
            else f"summed over all {n} pixels (it is predicted nowhere)"
        )
        print(f"Seg-Grad-CAM of class {name!r}, its score {where}, at layer {res.layer} ({h}x{w} map)")
    else:
        share = f"{float(res.probs[res.target]):.1%}"
        print(f"Grad-CAM of class {name!r} ({share}){truth} at layer {res.layer} ({h}x{w} map)")
    if res.raw_cam.max() > 0:
        peak = divmod(int(res.cam.argmax()), res.cam.shape[1])
        print(f"Grad-CAM peak at input row {peak[0]}, col {peak[1]}")
    else:  # relu(sum_c w_c A_c) <= 0 everywhere: a peak "at row 0, col 0" would be made up
        print(
            f"Grad-CAM is 0 everywhere: no position of layer {res.layer} raises the score of {name!r} (the "
            "weighted maps are negative or zero); the saliency panel still shows the input's gradient. "
            "Try another --target or an earlier --layer."
        )
    print(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]} px)")
    return 0


def _animate(args: argparse.Namespace) -> int:
    from cnnlab.viz.animate import conv_animation
    from cnnlab.viz.outpath import check_out_dir

    n, k, s, p, d, op = args.input, args.kernel, args.stride, args.padding, args.dilation, args.output_padding
    name = f"{args.kind}-n{n}-k{k}-s{s}-p{p}-d{d}" + (f"-op{op}" if op else "")
    out = _default_out(args, None, f"{name}.gif", suffix=".gif")
    if args.frames_dir is not None:
        check_out_dir(args.frames_dir, content="frame_NNNN.png files")
    anim = conv_animation(
        args.kind, n, k, s, p, d, output_padding=args.output_padding, path=out,
        frames_dir=args.frames_dir, seed=args.seed,
    )  # fmt: skip
    o = anim.output.shape[0]
    extra = f", output padding {op}" if args.kind == "transposed" else ""
    print(f"{args.kind}: input {n}x{n}, kernel {k}, stride {s}, padding {p}, dilation {d}{extra} -> output {o}x{o}")
    w, h = anim.frame_size
    print(f"wrote {out} ({anim.frames} frames of {w}x{h} px)")
    if anim.stale_frames:
        print(f"note: removed {anim.stale_frames} frame_NNNN.png files of an earlier animation from {args.frames_dir}")
    if anim.frame_paths:
        print(f"wrote {len(anim.frame_paths)} PNG frames to {args.frames_dir}")
    return 0


_COMMANDS = {
    "filters": _filters,
    "features": _features,
    "edges": _edges,
    "rf": _rf,
    "gradcam": _gradcam,
    "animate": _animate,
}


def run(args: argparse.Namespace) -> int:
    from cnnlab.errors import AnalysisError
    from cnnlab.viz.hooks import one_thread

    try:
        with one_thread():  # one image at a time: a second thread only adds hand-offs
            return _COMMANDS[args.picture](args)
    except (RuntimeError, AnalysisError) as err:  # the model refused the image: say which and how to fix it
        undeclared = getattr(args, "undeclared_size", None)
        if not getattr(args, "keep_size", False) and undeclared is None and not isinstance(err, RuntimeError):
            raise
        text = " ".join(str(err).split())
        if undeclared is not None:
            name, (h, w), suffix = undeclared
            where = (
                "an `input` entry in the spec file" if suffix in (".toml", ".yaml", ".yml", ".json")
                else "input_size = (C, H, W) beside the factory in its .py file, or as an attribute of the model"
            )  # fmt: skip
            hint = (
                f"{name} declares no input size, so the image ran at its own size {h}x{w} (HxW). Resize the image "
                f"to the size the model was built for, or declare that size ({where}) and viz resizes to it."
            )
        elif getattr(args, "keep_size", False):
            hint = "--keep-size kept the image's own size; drop it to resize the image to the model's input size."
        else:
            hint = "check that the image suits the model (size, channels)."
        raise ValueError(
            f"the model could not run on --image {getattr(args, 'image', '?')}: {text.rstrip('.')}. {hint}"
        ) from None
