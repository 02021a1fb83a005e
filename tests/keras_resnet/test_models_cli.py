"""``keras-resnet-models``: the table is streamed row by row and its counts are the paper's."""

from __future__ import annotations

from keras_resnet.cli import main


def test_rows_stream_with_the_papers_counts(capsys):
    assert main(["resnet20", "resnet56", "--markdown"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("| model | builder |") and lines[1].startswith("|---|")
    # Table 6 of the paper: ResNet-20 0.27 M, ResNet-56 0.85 M parameters (option A adds none).
    assert lines[2].split(" | ")[:2] == ["| resnet20", "ResNet20"]
    assert "| 269,722 |" in lines[2] and "| 853,018 |" in lines[3]
    assert "building and counting 2 model(s)" in err


def test_text_rows_line_up_under_the_header(capsys):
    assert main(["resnet20"]) == 0
    header, rule, row = capsys.readouterr().out.splitlines()
    assert header.index("params (M)") == row.index("0.27")
    assert len(rule.split()) == 7
