"""Commands that write a model folder: ``tireid convert``, ``tireid export onnx``, ``tireid pretrain-base``."""

from __future__ import annotations

import argparse

from ..errors import TIReIDError
from ..files import refuse_overlap
from ..loading import load_model_and_processor
from ..ranges import POSITIVE_INTEGER
from .arguments import add_model, add_overwrite
from .shell import add_command, add_command_group, refusing


def run_convert(args: argparse.Namespace) -> int:
    """`tireid convert {irra,openai-clip}`: a reference checkpoint -> a model folder and conversion.json."""
    from ..convert import convert_irra, convert_openai_clip

    refuse_overlap(args.out, "--out", {"the checkpoint": args.checkpoint})
    with refusing(FileExistsError):
        if args.format == "irra":
            report = convert_irra(args.checkpoint, args.out, variant=args.variant, image_size=args.image_size,
                                  overwrite=args.overwrite)
        else:
            report = convert_openai_clip(args.checkpoint, args.out, overwrite=args.overwrite)
    dropped = "; ".join(f"{group}: {len(names)} tensors" for group, names in report["dropped"].items()) or "nothing"
    target = report.get("method", "CLIPModel")
    print(f"wrote {args.out}: {target} from {report['source']}; dropped {dropped} (listed in {args.out}/conversion.json)")
    if report.get("note"):
        print(f"note: {report['note']}")
    return 0


def add_convert_parser(subparsers) -> None:
    """Adds `tireid convert {irra,openai-clip}`: reference checkpoints -> save_pretrained folders."""
    formats = add_command_group(subparsers, "convert", "format", "FORMAT",
                                help="convert a reference checkpoint (IRRA layout, OpenAI CLIP) into a model folder")
    irra = add_command(
        formats, "irra", run_convert, help="IRRA / RDE / SEN checkpoint (best.pth) -> clip_reid (uit for SEN)",
        description="Convert a checkpoint in IRRA's layout (base_model.* = OpenAI CLIP, rectangular position table) "
        "into a zoo model folder (weights, config, remote code, processor, conversion.json). Heads the zoo has no "
        "counterpart for are dropped and listed.",
    )
    irra.add_argument("checkpoint", help="the checkpoint file (.pth / .pt / .safetensors)")
    irra.add_argument("--variant", choices=("irra", "rde", "sen"), default="irra",
                      help="the reference method that wrote it (default: irra); sen converts into uit")
    irra.add_argument("--image-size", type=POSITIVE_INTEGER, nargs=2, default=(384, 128), metavar=("HEIGHT", "WIDTH"),
                      help="img_size it was trained at (default: 384 128)")
    openai = add_command(
        formats, "openai-clip", run_convert, help="OpenAI CLIP ViT file (ViT-B-16.pt, ...) -> a transformers CLIPModel folder",
        description="Convert OpenAI's original CLIP ViT file (TorchScript archive or state dict) into a "
        "transformers CLIPModel folder usable as clip_name_or_path (no Hub access needed).",
    )
    openai.add_argument("checkpoint", help="the CLIP file (e.g. ~/.cache/clip/ViT-B-16.pt)")
    for parser in (irra, openai):
        parser.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
        add_overwrite(parser)


def run_export_onnx(args: argparse.Namespace) -> int:
    """`tireid export onnx`: the image and text encoders of a saved model as ONNX files."""
    try:
        from ..onnx_export import export_onnx
    except ImportError as error:
        raise TIReIDError(f"needs onnx, onnxscript and onnxruntime: pip install 'tireid-hf[onnx]' ({error})") from error

    refuse_overlap(args.out, "--out", {"--model": args.model})
    model, processor = load_model_and_processor(args.model)
    with refusing(FileExistsError):
        export_onnx(model, processor, args.out, int8=args.int8, overwrite=args.overwrite)
    print(f"wrote {args.out}: image_encoder.onnx, text_encoder.onnx" + (" and their int8 variants" if args.int8 else "")
          + " with the processor and README.md")
    return 0


def add_export_parser(subparsers) -> None:
    formats = add_command_group(subparsers, "export", "export_format", "FORMAT",
                                help="export a saved model's encoders (ONNX)")
    onnx = add_command(formats, "onnx", run_export_onnx,
                       help="image and text encoders as ONNX (inference path, dynamic batch)",
                       description="Write image_encoder.onnx and text_encoder.onnx (torch.onnx dynamo exporter), "
                       "the processor and a README stating the pre-processing into --out.")
    add_model(onnx)
    onnx.add_argument("--out", required=True, help="folder to write")
    onnx.add_argument("--int8", action="store_true", help="also write onnxruntime's dynamically quantised int8 variants")
    add_overwrite(onnx)


def run_pretrain_base(args: argparse.Namespace) -> int:
    """`tireid pretrain-base`: the small CLIP base the synthetic configs start from."""
    from ..training.pretrain_base import pretrain_base

    with refusing(FileExistsError, NotADirectoryError):
        log = pretrain_base(args.out, overwrite=args.overwrite)
    last = log["epochs"][-1]
    print(f"wrote {args.out}: held-out zero-shot R@1 text->image {last['held_out_t2i_R1']:.1f}, "
          f"image->text {last['held_out_i2t_R1']:.1f}")
    return 0


def add_pretrain_base_parser(subparsers) -> None:
    """Adds `tireid pretrain-base`: the zoo's small pretrained CLIP base (`make base`)."""
    base = add_command(
        subparsers, "pretrain-base", run_pretrain_base,
        help="pretrain the small CLIP base the synthetic configs start from (make base)",
        description="Pretrain a small transformers CLIPModel contrastively on the generated alt-text corpus "
        "(tireid_hf.data.synthetic.pretraining) and save it with its CLIPProcessor: the folder the "
        "configs/*_synthetic.yaml name as clip_name_or_path. One CPU thread, bit-identical for the same config.",
    )
    base.add_argument("--out", default="bases/clip-synthetic", help="output folder (default: bases/clip-synthetic)")
    add_overwrite(base)
