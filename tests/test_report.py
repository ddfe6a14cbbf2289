import pytest

from shared.report import committed_results, fmt, line_plot, markdown_table, render_results, replace_between_markers
from shared.results import Results, Table, Target


def test_fmt_and_markdown_table():
    assert fmt(0.123456) == "0.1235" and fmt(None) == "–" and fmt(3) == "3" and fmt(123456.0) == "1.235e+05"
    assert fmt(383.31) == "383.3"
    assert markdown_table(["a", "b"], [[1, 0.5]]) == "| a | b |\n|---|---|\n| 1 | 0.5000 |"


def test_replace_between_markers():
    text = "head\n<!-- results:begin -->\nold\n<!-- results:end -->\ntail"
    assert replace_between_markers(text, "new") == "head\n<!-- results:begin -->\nnew\n<!-- results:end -->\ntail"
    with pytest.raises(ValueError, match="markers"):
        replace_between_markers("no markers", "x")


def test_render_results_shows_every_target_and_table():
    res = Results(
        paper="p",
        scale="mini",
        command="python -m papers.p.reproduce --scale mini",
        seeds=[0],
        machine="m",
        created="now",
        git_commit="abcdef1234567890",
        targets=[
            Target("t1", "accuracy", "Table 1", paper=0.9, tolerance=0.01, mean=0.905, n=1).judge(),
            Target("t2", "margin", "Fig. 2", comparison="at_least", threshold=0.0).judge(),
        ],
        tables={"acc": Table("Accuracy", ["d", "ours"], [[1, 0.5]])},
        figures=["plot.png"],
        wall_time_s={"a": 1.0, "b": 2.0},
    )
    text = render_results(res, "results/mini/")
    assert "1 reproduced, 1 not run" in text and "0.9000 ± 0.0100" in text and "≥ 0.0000" in text
    assert "**Accuracy**" in text and "![plot.png](results/mini/plot.png)" in text and "3.0 s" in text


def test_committed_results_take_the_standard_scales_in_order_then_the_others_by_name(tmp_path):
    assert committed_results(tmp_path) == []  # no results folder at all
    for scale in ("full", "zeta_ext", "smoke", "mini", "alpha_ext"):
        res = Results(
            paper="p", scale=scale, command="c", seeds=[0], machine="m", created="now", git_commit="a", targets=[]
        )
        res.write(tmp_path / "results" / scale / "results.json")
    (tmp_path / "results" / "gpu").mkdir()  # raw files only, no results.json: not a scale
    assert [r.scale for r in committed_results(tmp_path)] == ["mini", "full", "alpha_ext", "zeta_ext"]
    headers = [render_results(r).splitlines()[0] for r in committed_results(tmp_path)]
    assert headers[0] == "### Scale `mini`: " and headers[1] == "### Scale `full`: "
    assert headers[2] == "### Scale `alpha_ext` (ours: an extension config, not a compared scale): "


def test_line_plot_writes_png(tmp_path):
    path = line_plot(
        tmp_path / "p.png",
        {"PCA": ([1, 2], [0.5, 0.6], [0.01, 0.02])},
        "t",
        "x",
        "y",
        reference={"PCA (paper)": ([1, 2], [0.55, 0.65])},
        hlines={"base": 0.7},
        logy=True,
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pipes_in_cells_are_escaped():
    assert markdown_table(["x"], [["max |a − b|"]]).splitlines()[2] == "| max \\|a − b\\| |"


def test_update_readme_reports_and_optionally_writes(tmp_path):
    from shared.report import update_readme

    path = tmp_path / "README.md"
    path.write_text("a\n<!-- results:begin -->\nold\n<!-- results:end -->\n")
    assert update_readme(path, "new", write=False) and "old" in path.read_text()
    assert update_readme(path, "new") and "\nnew\n" in path.read_text()
    assert not update_readme(path, "new")


def test_mean_std_cell():
    from shared.report import mean_std_cell

    assert mean_std_cell([1.0, 2.0, None, float("nan")]) == "1.500 ± 0.500"
    assert mean_std_cell([0.25], digits=1) == "0.2"
    assert mean_std_cell([None]) == "–"


def test_long_tables_are_folded_short_ones_are_not():
    from shared.report import FOLD_ROWS, table_markdown
    from shared.results import Table

    short = table_markdown(Table("few", ["a"], [[i] for i in range(FOLD_ROWS)]))
    long = table_markdown(Table("many", ["a"], [[i] for i in range(FOLD_ROWS + 1)]))
    assert short.startswith("**few**") and "<details>" not in short
    assert long.startswith("<details><summary><b>many</b> (31 rows)</summary>") and long.endswith("</details>")
    assert long.count("\n| ") == FOLD_ROWS + 1 + 1  # every row and the separator stay in the README


def test_the_status_table_marks_extension_configs_as_ours(tmp_path):
    from papers import PaperInfo
    from papers.status import paper_status

    for scale in ("mini", "mini_variant"):
        res = Results(
            paper="p",
            scale=scale,
            command="c",
            seeds=[0],
            machine="box, 2 cores",
            created="now",
            git_commit="a",
            targets=[],
        )
        res.write(tmp_path / "results" / scale / "results.json")
    row = paper_status(PaperInfo("p", tmp_path, {"title": "T"}))
    assert row[2] == "mini (box); mini_variant (ours) (box)"
    assert row[3].startswith("mini: ") and "; mini_variant (ours): " in row[3]
