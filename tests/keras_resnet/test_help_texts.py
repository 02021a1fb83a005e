"""Every console script's ``--help`` is plain text about the project: no reStructuredText
markup, no Python object paths, nothing about how the project was built."""

from __future__ import annotations

import importlib
import re
from importlib.metadata import entry_points

import pytest

#: The installed console scripts of this project and their ``module:function``.
SCRIPTS = {e.name: e.value for e in entry_points(group="console_scripts")
           if e.value.startswith("keras_resnet")}
MARKUP = re.compile(r"``|:(?:func|class|mod|meth|data|attr):`|\b(?:issue|session|ticket)s?\b",
                    re.IGNORECASE)


def test_every_script_is_checked():
    assert {"keras-resnet-models", "keras-resnet-train", "keras-resnet-export"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_is_plain_text(script, capsys):
    module, function = SCRIPTS[script].split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: {script}")
    assert not MARKUP.findall(text), MARKUP.findall(text)
