"""``cstp export CKPT -o model.onnx``: encoder to ONNX (verified) or to a state-dict file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _default_out(checkpoint: Path, fmt: str) -> Path:
    return checkpoint.with_suffix(".onnx" if fmt == "onnx" else ".encoder.pt")


def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint written by cstp pretrain/finetune/linear.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output file (default: the checkpoint's name with .onnx / .encoder.pt). With --check-only: the ONNX file to check."),
    ] = None,
    exporter: Annotated[str, typer.Option(help="ONNX exporter: dynamo (torch.export, default) or legacy (TorchScript).")] = "dynamo",
    opset: Annotated[int, typer.Option(help="ONNX opset (>= 18).")] = 18,
    fmt: Annotated[str, typer.Option("--format", help="onnx, or state_dict (a weights_only .pt for your own PyTorch code).")] = "onnx",
    check_only: Annotated[bool, typer.Option("--check-only", help="Verify an existing ONNX file against the checkpoint; write nothing.")] = False,
    provider: Annotated[str, typer.Option(help="onnxruntime provider for verification: auto, cpu, cuda or tensorrt.")] = "auto",
    batch: Annotated[int, typer.Option(help="Example batch size traced (parity runs at 1, 3 and 7).")] = 2,
) -> None:
    """Export a trained encoder to ONNX, verified against PyTorch with onnxruntime (exit 1 on mismatch)."""
    from cstp_cli.core.fsutil import check_output_file
    from cstp_cli.deploy import export as ex
    from cstp_cli.errors import UsageError

    if fmt not in ex.FORMATS:
        raise UsageError(f"--format must be one of {', '.join(ex.FORMATS)}, not {fmt!r}")
    if exporter not in ex.EXPORTERS:
        raise UsageError(f"--exporter must be one of {', '.join(ex.EXPORTERS)}, not {exporter!r}")
    if provider not in ("auto", "cpu", "cuda", "tensorrt"):
        raise UsageError(f"--provider must be auto, cpu, cuda or tensorrt, not {provider!r}")
    target = out if out is not None else _default_out(checkpoint, fmt)
    if check_only:
        if fmt != "onnx":
            raise UsageError("--check-only checks ONNX files; drop --format state_dict")
        result = ex.check_onnx(target, checkpoint, provider=provider)
        typer.echo(f"checked {checkpoint} against:")
    elif fmt == "state_dict":
        check_output_file(target, "-o")  # a real write test, before loading anything
        result = ex.export_state_dict(checkpoint, target)
    else:
        check_output_file(target, "-o")  # a real write test, before loading or tracing anything
        result = ex.export_onnx(checkpoint, target, exporter=exporter, opset=opset, batch=batch, provider=provider)
        typer.echo("exported and verified:")
    for line in result.lines():
        typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
