"""``keras-resnet-models``: the table of every registered model, from :func:`profile`.

Each row is printed as soon as its model is built and counted, so the table grows line by
line (the deepest nets take a few seconds each) instead of appearing after a silent wait.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from keras_resnet.console import Parser, UsageError, native_stderr_silenced, run_command

HEADER = ("model", "builder", "family", "input", "params (M)", "trainable", "MACs (G)")
#: Column widths of the text table: wide enough for every registered name and count.
WIDTHS = (17, 16, 8, 7, 10, 11, 8)


def model_rows(names: list[str]) -> Iterator[dict]:
    """One row per model, yielded as it is counted: name, family, input size, params and
    MACs at that size."""
    from keras_resnet.models import create_model, model_info
    from keras_resnet.profile import profile

    for name in names:
        info = model_info(name)
        stats = profile(create_model(name))
        yield {"name": name, "builder": info["builder"], "family": info["family"],
               "input": "x".join(map(str, info["input_shape"][:2])), **stats}


def model_table(names: list[str]) -> list[dict]:
    """Every row of :func:`model_rows` at once."""
    return list(model_rows(names))


def _cells(row: dict) -> list[str]:
    return [row["name"], row["builder"], row["family"], row["input"],
            f"{row['params'] / 1e6:.2f}", f"{row['trainable_params']:,}",
            f"{row['macs'] / 1e9:.3f}"]


def _line(cells: list[str] | tuple[str, ...], markdown: bool) -> str:
    if markdown:
        return "| " + " | ".join(cells) + " |"
    return "  ".join(c.ljust(w) for c, w in zip(cells, WIDTHS, strict=True)).rstrip()


def header_lines(markdown: bool = False) -> list[str]:
    """The header (and its rule) of the text or Markdown table."""
    rule = "|" + "---|" * len(HEADER) if markdown else "  ".join("-" * w for w in WIDTHS)
    return [_line(HEADER, markdown), rule]


def format_table(rows: list[dict], markdown: bool = False) -> str:
    """The whole table as one string."""
    return "\n".join(header_lines(markdown) + [_line(_cells(r), markdown) for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="keras-resnet-models",
                    description="The table of every registered model: family, input size, "
                                "parameters and multiply-adds, a row per model as it is counted.")
    parser.add_argument("names", nargs="*", help="registry names (default: all)")
    parser.add_argument("--family", choices=["imagenet", "cifar"])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return run_command(lambda: _list(parser.parse_args(argv)))


def _list(args: argparse.Namespace) -> int:
    with native_stderr_silenced(unless_loaded="keras"):
        import keras  # noqa: F401 - starts the backend with its start-up lines hidden

        from keras_resnet.models import list_models
    available = list_models(args.family)
    unknown = [n for n in args.names if n.lower() not in available]
    if unknown:
        raise UsageError(f"unknown model(s) {', '.join(unknown)}; available: "
                         f"{', '.join(available)}")
    names = [n.lower() for n in args.names] or available
    print(f"building and counting {len(names)} model(s), one row each as it is done",
          file=sys.stderr, flush=True)
    for line in header_lines(args.markdown):
        print(line, flush=True)
    for row in model_rows(names):
        print(_line(_cells(row), args.markdown), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
