from dataclasses import dataclass, field
from typing import Literal

import pytest

from shared.config import ConfigError, apply_overrides, from_dict, load_config, parse_override, to_dict


@dataclass
class Inner:
    lr: float = 1e-3
    dims: list[int] = field(default_factory=list)


@dataclass
class Outer:
    name: str
    mode: Literal["a", "b"] = "a"
    inner: Inner = field(default_factory=Inner)
    limit: int | None = None
    flag: bool = False


def test_nested_load_and_defaults():
    cfg = from_dict(Outer, {"name": "x", "inner": {"dims": [1, 2]}})
    assert cfg.inner.dims == [1, 2] and cfg.inner.lr == 1e-3 and cfg.mode == "a" and cfg.limit is None


def test_unknown_key_names_valid_keys():
    with pytest.raises(ConfigError, match=r"inner: unknown key\(s\) 'lrr'; valid keys: dims, lr"):
        from_dict(Outer, {"name": "x", "inner": {"lrr": 1}})


def test_missing_required_key():
    with pytest.raises(ConfigError, match="name: required key is missing"):
        from_dict(Outer, {})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": 3}, "name: expected a string"),
        ({"name": "x", "mode": "c"}, "valid values: 'a', 'b'"),
        ({"name": "x", "flag": "yes"}, "expected true or false"),
        ({"name": "x", "inner": {"dims": [1, "two"]}}, r"inner.dims\[1\]: expected an integer"),
        ({"name": "x", "limit": 2.5}, r"limit: expected an integer, got 2.5 \(null is also valid\)"),
    ],
)
def test_wrong_types_are_named(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_int_is_accepted_as_float():
    assert from_dict(Outer, {"name": "x", "inner": {"lr": 1}}).inner.lr == 1.0


def test_overrides_parse_yaml_values_and_nest():
    assert parse_override("inner.dims=[1, 3]") == (["inner", "dims"], [1, 3])
    data = apply_overrides({"name": "x"}, ["inner.lr=0.5", "limit=null", "name=y"])
    assert data == {"name": "y", "inner": {"lr": 0.5}, "limit": None}
    with pytest.raises(ConfigError, match="must look like key.path=value"):
        parse_override("inner.lr")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_load_config_file_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: run\ninner: {lr: 0.1}\n")
    cfg = load_config(Outer, path, ["inner.dims=[5]"])
    assert to_dict(cfg) == {"name": "run", "mode": "a", "inner": {"lr": 0.1, "dims": [5]}, "limit": None, "flag": False}
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key\(s\) 'bogus'"):
        load_config(Outer, path, ["bogus=1"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "missing.yaml")
