"""``cstp cache``: build, inspect and verify HDF5 frame caches (DESIGN "HDF5 cache")."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

cache_app = typer.Typer(help="Build, inspect and verify HDF5 frame caches.", no_args_is_help=True)


class Compression(str, Enum):
    none = "none"
    lzf = "lzf"


def _size(text: str) -> tuple[int, int]:
    from cstp_cli.core.options import parse_size

    return parse_size(text)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


@cache_app.command("build")
def build(
    data: Annotated[
        Optional[str],
        typer.Argument(help="Dataset folder (UCF-101, HMDB-51, Kinetics, CSV, class folders, ...); default: the built-in synthetic dataset."),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Cache file to write (default: a keyed name in the cache folder).")
    ] = None,
    size: Annotated[str, typer.Option("--size", help="Frame size WIDTHxHEIGHT every frame is resized to.")] = "171x128",
    workers: Annotated[
        Optional[int], typer.Option("--workers", min=0, help="Decoder processes (default: CPU count, at most 8; 0 = in this process).")
    ] = None,
    compression: Annotated[
        Optional[Compression],
        typer.Option("--compression", help="HDF5 compression of the frames (default: none; lzf for the built-in synthetic dataset)."),
    ] = None,
    fps: Annotated[
        Optional[float], typer.Option("--fps", min=0.001, help="Resample every video to this frame rate (default: keep each video's frames).")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds allowed to decode one video before it counts as failed.")] = 120.0,
    codec: Annotated[
        str,
        typer.Option("--codec", help="How frames are stored: raw (default, fastest to read) or jpeg[:QUALITY] (default quality 90, about 1/6 of raw)."),
    ] = "raw",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Decode every video of DATA into one HDF5 cache; undecodable files are listed at the end."""
    from cstp_cli.data.cache import build_cache, is_cache_file
    from cstp_cli.data.cache.codec import parse_codec
    from cstp_cli.errors import CacheError, DataError

    wh = _size(size)
    chosen = parse_codec(codec)
    if data is None:
        from cstp_cli.data.resolve import SYNTHETIC_COMPRESSION
        from cstp_cli.data.synth import default_dataset_root

        root = Path(default_dataset_root())
        compression = compression or Compression(SYNTHETIC_COMPRESSION if chosen.is_raw else "none")
    else:
        root = Path(data).expanduser()
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist; give a dataset folder")
    if is_cache_file(root):
        raise DataError(f"{root} is already a cache file; give the dataset folder it was built from")
    try:
        result = build_cache(
            root, out=output, size=wh, workers=workers, compression=(compression or Compression.none).value, fps=fps, timeout=timeout, progress=not quiet,
            codec=chosen,
        )
    except KeyboardInterrupt:
        typer.echo("interrupted: the videos decoded so far are kept; run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    for line in result.warnings:
        typer.echo(f"warning: {line}", err=True)
    _report_not_cached(result)
    if result.path is None:
        raise CacheError(f"no video of {root} could be decoded ({_not_cached(result)}); no cache was written")
    typer.echo(f"cached {result.cached} video(s), {_not_cached(result)}, {_mb(result.path.stat().st_size)} -> {result.path}")


#: Skipped files listed at most, one per line; the cache stores them all (`cstp cache info`).
SHOW_SKIPPED = 50


def _not_cached(result) -> str:
    """``"3 not cached: 1 not a video, 1 undecodable, 1 timed out"`` (or ``"0 not cached"``)."""
    from cstp_cli.data.inventory import category_counts

    counts = category_counts([why for _, why in result.failed + result.skipped])
    total = len(result.failed) + len(result.skipped)
    return f"{total} not cached" + (": " + ", ".join(f"{n} {c}" for c, n in counts.items()) if counts else "")


def _report_not_cached(result) -> None:
    """Every file under DATA that was not cached, with its reason (failed videos first)."""
    if result.failed:
        typer.echo(f"{len(result.failed)} video(s) failed:")
        for path, reason in result.failed:
            typer.echo(f"  {path}: {reason}")
    if result.skipped:
        typer.echo(f"{len(result.skipped)} other file(s) not cached:")
        show = result.skipped if result.path is None else result.skipped[:SHOW_SKIPPED]
        for path, reason in show:
            typer.echo(f"  {path}: {reason}")
        if len(show) < len(result.skipped):
            typer.echo(f"  ... and {len(result.skipped) - len(show)} more (`cstp cache info {result.path}` lists them all)")


@cache_app.command("info")
def info(
    file: Annotated[Path, typer.Argument(help="Cache file (.h5).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Format version, frame size, videos per split, frames, bytes, build parameters, failures."""
    from cstp_cli.data.cache import cache_info

    d = cache_info(file)
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    b = d["build"]
    typer.echo(f"cache        {d['path']}")
    typer.echo(f"format       version {d['format_version']}")
    typer.echo(f"frame size   {d['frame_size']}")
    typer.echo(f"videos       {d['videos']} ({d['classes']} classes), {d['frames']} frames, {_mb(d['bytes'])}")
    for fold, counts in d["splits"].items():
        typer.echo(f"fold {fold:<7} train {counts['train']}, test {counts['test']}, unused {counts['unused']}")
    typer.echo(f"build        fps {b['fps'] or 'source'}, compression {b['compression']}, chunk {b['chunk_frames']} frames")
    c = d["codec"]
    psnr = "" if c["psnr_db"] is None else f", PSNR {c['psnr_db']:.1f} dB vs raw (frames decoded back at build)"
    ratio = c["raw_bytes_per_frame"] / max(c["bytes_per_frame"], 1e-9)
    vs_raw = "" if c["codec"] == "raw" else f" ({ratio:.1f}x smaller than raw {c['raw_bytes_per_frame'] / 1e3:.1f} kB)"
    typer.echo(f"codec        {c['codec']}: {c['bytes_per_frame'] / 1e3:.1f} kB/frame{vs_raw}{psnr}")
    typer.echo(f"source       {b['source_root']} ({b['dataset_kind']}), built {b['created']}")
    typer.echo("versions     " + ", ".join(f"{k} {v}" for k, v in (d["versions"] or {}).items()))
    typer.echo(f"failures     {len(d['failures'])}")
    for item in d["failures"]:
        typer.echo(f"  {item['path']}: {item['reason']}")
    typer.echo(f"not videos   {len(d['skipped'])} other file(s) under the source folder")
    for item in d["skipped"]:
        typer.echo(f"  {item['path']}: {item['reason']}")


@cache_app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="Cache file (.h5).")],
    no_sources: Annotated[bool, typer.Option("--no-sources", help="Skip comparing source fingerprints.")] = False,
) -> None:
    """Check offsets, shapes, frame checksums and source fingerprints; exit 1 when a problem is found."""
    from cstp_cli.data.cache import verify_cache
    from cstp_cli.errors import CacheError

    notes: list[str] = []
    problems = verify_cache(file, check_sources=not no_sources, notes=notes)
    for line in notes:
        typer.echo(f"note: {line}")
    for line in problems:
        typer.echo(f"problem: {line}")
    if problems:
        raise CacheError(f"{file}: {len(problems)} problem(s) found; rebuild it with `cstp cache build`")
    typer.echo(f"ok: {file}")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
