import json

import pytest

from shared.results import Results, ResultsError, Table, Target, load, validate, verdict_for


def target(**kw) -> Target:
    return Target(name="t", description="d", source="s", **kw)


@pytest.mark.parametrize(
    "kw, verdict",
    [
        (dict(paper=0.85, tolerance=0.005, mean=0.853, n=1), "reproduced"),
        (dict(paper=0.85, tolerance=0.005, mean=0.855, n=1), "reproduced"),  # edge is inside
        (dict(paper=0.85, tolerance=0.005, mean=0.86, n=1), "not reproduced"),
        (dict(paper=0.85, tolerance=0.005, mean=0.86, n=1, higher_is_better=True), "better than paper"),
        (dict(paper=0.85, tolerance=0.005, mean=0.84, n=1, higher_is_better=True), "not reproduced"),
        (dict(paper=0.85, tolerance=0.005, mean=0.84, n=1, higher_is_better=False), "better than paper"),
        (dict(paper=0.85, tolerance=0.005), "not run"),
        (dict(paper=None, tolerance=0.005, mean=0.8, n=1), "no reference"),
        (dict(comparison="at_least", threshold=0.0, mean=0.01, n=2), "reproduced"),
        (dict(comparison="at_least", threshold=0.0, mean=-0.01, n=2), "not reproduced"),
        (dict(comparison="at_most", threshold=0.005, mean=0.004, n=1), "reproduced"),
        (dict(comparison="at_most", threshold=0.005, mean=0.006, n=1), "not reproduced"),
    ],
)
def test_verdicts(kw, verdict):
    assert verdict_for(target(**kw)) == verdict


def make_results() -> Results:
    return Results(
        paper="p",
        scale="mini",
        command="cmd",
        seeds=[0],
        machine="m",
        created="now",
        git_commit="abc",
        targets=[target(paper=1.0, tolerance=0.1, mean=1.05, n=1).judge()],
        tables={"t": Table("title", ["a", "b"], [[1, 2]])},
    )


def test_write_load_round_trip(tmp_path):
    path = make_results().write(tmp_path / "results.json")
    back = load(path)
    assert back.targets[0].verdict == "reproduced" and back.tables["t"].rows == [[1, 2]]
    assert back.to_json() == make_results().to_json()


def test_validate_rejects_inconsistent_verdict(tmp_path):
    data = make_results().to_json()
    data["targets"][0]["verdict"] = "not reproduced"
    with pytest.raises(ResultsError, match="does not follow from its numbers"):
        validate(data)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="r.json"):
        load(path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("seeds"), "missing key 'seeds'"),
        (lambda d: d["targets"][0].update(verdict="great"), "verdict 'great'"),
        (lambda d: d["targets"].append(dict(d["targets"][0])), "duplicate target name"),
        (lambda d: d["tables"]["t"]["rows"].append([1]), "row 1 has 1 cells, expected 2"),
        (lambda d: d["targets"][0].update(mean="high"), "'mean' must be a number"),
    ],
)
def test_validate_names_the_fault(mutate, message):
    data = make_results().to_json()
    mutate(data)
    with pytest.raises(ResultsError, match=message):
        validate(data)


def test_write_refuses_invalid_and_leaves_nothing(tmp_path):
    res = make_results()
    res.targets[0].verdict = "not reproduced"
    with pytest.raises(ResultsError):
        res.write(tmp_path / "results.json")
    assert list(tmp_path.iterdir()) == []


def test_judge_by_measures_drops_missing_seeds_and_names_unknown_targets():
    import pytest

    from shared.results import judge_by_measures

    specs = [{"name": "gap", "description": "d", "source": "s", "comparison": "at_least", "threshold": 0.5}]
    got = judge_by_measures(specs, {"gap": lambda run: run.get("gap")}, [{"gap": 1.0}, {}, {"gap": 0.0}])[0]
    assert (got.mean, got.std, got.n, got.verdict) == (0.5, 0.5, 2, "reproduced")
    assert judge_by_measures(specs, {"gap": lambda run: None}, [{}])[0].verdict == "not run"
    with pytest.raises(KeyError, match="'gap' has no measure; known: other"):
        judge_by_measures(specs, {"other": lambda run: 1.0}, [{}])
    # an interval that holds the threshold makes the same mean "not resolvable"
    wide = judge_by_measures(specs, {"gap": lambda run: run["gap"]}, [{"gap": 1.0}], {"gap": (0.2, 1.3)})[0]
    assert (wide.ci_low, wide.ci_high, wide.verdict) == (0.2, 1.3, "not resolvable")


def test_extension_targets_are_counted_apart_from_the_papers_claims(tmp_path):
    from shared.report import render_results

    res = make_results()
    ext = target(paper=1.0, tolerance=0.1, mean=3.0, n=1)
    ext.name, ext.source = "causal_t", "extension: causal cutting"
    res.targets += [ext.judge(), target(paper=1.0, tolerance=0.1, mean=3.0, n=1)]
    res.targets[-1].name = "u"
    res.targets[-1].judge()
    assert [t.is_extension for t in res.targets] == [False, True, False]
    assert res.verdict_counts()["reproduced"] == 1 and res.verdict_counts()["not reproduced"] == 1
    assert res.verdict_counts(extensions=True)["not reproduced"] == 1
    assert sum(res.verdict_counts().values()) + sum(res.verdict_counts(extensions=True).values()) == 3
    assert res.verdict_summary() == "1 reproduced, 1 not reproduced (extensions of ours: 1 not reproduced)"
    assert "1 reproduced, 1 not reproduced (extensions" in render_results(load(res.write(tmp_path / "r.json")))
