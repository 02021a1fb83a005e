"""``keras-resnet-models``: the table of every registered model, from :func:`profile`."""

from __future__ import annotations

import argparse
import sys

from keras_resnet.console import Parser, UsageError, native_stderr_silenced, run_command, text_table


def model_table(names: list[str]) -> list[dict]:
    """One row per model: name, family, input size, params and MACs at that size."""
    from .models import create_model, model_info
    from .profile import profile

    rows = []
    for name in names:
        info = model_info(name)
        stats = profile(create_model(name))
        rows.append({"name": name, "builder": info["builder"], "family": info["family"],
                     "input": "x".join(map(str, info["input_shape"][:2])), **stats})
    return rows


def format_table(rows: list[dict], markdown: bool = False) -> str:
    header = ["model", "builder", "family", "input", "params (M)", "trainable", "MACs (G)"]
    body = [[r["name"], r["builder"], r["family"], r["input"], f"{r['params'] / 1e6:.2f}",
             f"{r['trainable_params']:,}", f"{r['macs'] / 1e9:.3f}"] for r in rows]
    return text_table(header, body, markdown=markdown, rule=False)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="keras-resnet-models", description=__doc__)
    parser.add_argument("names", nargs="*", help="registry names (default: all)")
    parser.add_argument("--family", choices=["imagenet", "cifar"])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return run_command(lambda: _list(parser.parse_args(argv)))


def _list(args: argparse.Namespace) -> int:
    with native_stderr_silenced(unless_loaded="keras"):
        import keras  # noqa: F401 - starts the backend with its start-up lines hidden

        from .models import list_models
    available = list_models(args.family)
    unknown = [n for n in args.names if n.lower() not in available]
    if unknown:
        raise UsageError(f"unknown model(s) {', '.join(unknown)}; available: "
                         f"{', '.join(available)}")
    print(format_table(model_table([n.lower() for n in args.names] or available), args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
