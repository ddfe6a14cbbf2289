"""shared.traces without root: decoding, cutting, scheduling, loading, the CTF reader, the CLI."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from shared.metrics import auroc
from shared.traces import SAMPLE_DIR, TraceError, load_dataset, parse_behaviours
from shared.traces.behaviours import BEHAVIOURS, NOVELTIES, PAPER_SEVEN
from shared.traces.elf import symbol_offset
from shared.traces.errors import ManifestError, OptionError
from shared.traces.events import SCHEMA, decode_capture
from shared.traces.load import parse_wrk
from shared.traces.ngram import NgramModel
from shared.traces.requests import cut_requests
from shared.traces.ringbuf import read_cpu
from shared.traces.schedule import schedule, splits_of
from shared.traces.server import Stack
from shared.traces.syscalls import syscall_names

FIXTURES = Path(__file__).parent / "fixtures" / "traces"
REPO = Path(__file__).resolve().parents[1]


# -- raw ring-buffer pages ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    """The committed real capture, unpacked: cpuN.raw, formats.json, tasks.json, trace.txt."""
    dest = tmp_path_factory.mktemp("capture")
    for f in (FIXTURES / "capture").iterdir():
        if f.suffix == ".gz":
            (dest / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
        else:
            shutil.copy(f, dest / f.name)
    return dest


_TEXT = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+\S+\s+(?P<s>\d+)\.(?P<us>\d+):\s+(?P<event>\w+):\s?(?P<rest>.*)$"
)


def _kernel_text(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        m = _TEXT.match(line)
        if line.startswith("#") or not m:
            continue
        rows.append(m.groupdict())
    return rows


def test_decoder_matches_the_kernels_own_text_rendering(capture):
    """Every event, in order: time (the text rounds to the microsecond), tid, cpu, syscall and return."""
    table = decode_capture(capture)
    text = _kernel_text(capture / "trace.txt")
    # our return probes' syscall (enter NR 335, exit NR -1) is dropped by the decoder
    uretprobe = [r for r in text if re.match(r"NR (335|-1)\b", r["rest"])]
    assert uretprobe
    text = [r for r in text if r not in uretprobe]
    assert table.num_rows == len(text) > 1000
    ts = table.column("ts").to_numpy()
    assert np.array_equal((ts + 500) // 1000, [int(r["s"]) * 1_000_000 + int(r["us"]) for r in text])
    assert table.column("tid").to_pylist() == [int(r["tid"]) for r in text]
    assert table.column("cpu").to_pylist() == [int(r["cpu"]) for r in text]
    names = syscall_names("x86_64")
    got = table.to_pydict()
    for i, r in enumerate(text):
        if r["event"] in ("sys_enter", "sys_exit"):
            nr = int(re.match(r"NR (\d+)", r["rest"]).group(1))
            assert got["name"][i] == names[nr] and got["entry"][i] == (1 if r["event"] == "sys_enter" else 2)
            if r["event"] == "sys_exit":
                assert got["ret"][i] == int(r["rest"].split("= ")[1])
        elif r["event"] == "sched_switch":
            assert got["target_tid"][i] == int(re.search(r"next_pid=(\d+)", r["rest"]).group(1))
            assert got["kind"][i] == "sched"
        elif r["event"].startswith("sched_"):
            assert got["name"][i] == r["event"] and got["kind"][i] == "sched"
        else:
            assert got["name"][i] == r["event"] and got["kind"][i] == "probe"


def test_decoder_output_schema_and_time_order(capture):
    table = decode_capture(capture)
    assert table.schema == SCHEMA and table.num_rows > 1000
    assert np.all(np.diff(table.column("ts").to_numpy()) >= 0)
    assert set(table.column("comm").to_pylist()) >= {"apache2", "php-fpm8.2", "mariadbd"}


def _page(records: list[bytes], stamp: int, page_size: int = 4096, missed: bool = False) -> bytes:
    data = b"".join(records)
    commit = len(data) | ((1 << 31) if missed else 0)
    return (struct.pack("<QQ", stamp, commit) + data).ljust(page_size, b"\0")


def _data(delta: int, type_id: int, pid: int, payload: bytes = b"") -> bytes:
    body = struct.pack("<HBBi", type_id, 0, 0, pid) + payload
    body = body.ljust((len(body) + 3) // 4 * 4, b"\0")
    return struct.pack("<I", (len(body) // 4) | (delta << 5)) + body


def test_ring_buffer_record_types_by_hand(tmp_path):
    """Time extend (30), padding (29), absolute stamp (31) and a long record (type_len 0)."""
    long_payload = b"x" * 120  # > 112 bytes: stored with type_len 0 and an explicit length
    long_body = struct.pack("<HBBi", 9, 0, 0, 7) + long_payload
    records = [
        _data(100, 5, 1),  # ts = 1000 + 100
        struct.pack("<II", 30 | (3 << 5), 2),  # time extend: + 3 + (2 << 27)
        _data(10, 5, 2),  # ts = 1100 + 3 + 2**28 + 10
        struct.pack("<II", 29 | (1 << 5), 8) + b"\0" * 4,  # discarded record (padding, 12 bytes)
        struct.pack("<II", 0 | (5 << 5), len(long_body) + 4) + long_body,  # + 5
        struct.pack("<II", 31 | (7 << 5), 1),  # absolute stamp: 7 | (1 << 27)
        _data(1, 5, 3),  # ts = 7 + 2**27 + 1
    ]
    path = tmp_path / "cpu0.raw"
    path.write_bytes(_page(records, 1000) + _page([_data(0, 5, 4)], 5000, missed=True))
    rec = read_cpu(path)
    first = 1000 + 100
    ext = first + 3 + (2 << 27) + 10
    assert rec.ts.tolist() == [first, ext, ext + 5, 7 + (1 << 27) + 1, 5000]
    assert rec.type_id.tolist() == [5, 5, 9, 5, 5]
    assert rec.pages == 2 and rec.pages_with_loss == 1


def test_truncated_raw_file_is_named(tmp_path):
    bad = tmp_path / "cpu0.raw"
    bad.write_bytes(b"\0" * 1000)
    with pytest.raises(TraceError, match="cpu0.raw.*whole number"):
        read_cpu(bad)


def test_capture_without_formats_is_an_error(tmp_path):
    (tmp_path / "cpu0.raw").write_bytes(b"")
    with pytest.raises(TraceError, match="formats.json"):
        decode_capture(tmp_path)


# -- ELF offsets -----------------------------------------------------------------------------------
def _binutils_offset(binary: str, symbol: str) -> int:
    nm = subprocess.run(["nm", "-D", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    vaddr = next(int(line.split()[0], 16) for line in nm.splitlines() if line.split()[-1].split("@")[0] == symbol)
    segs = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout
    for line in segs.splitlines():
        parts = line.split()
        if parts and parts[0] == "LOAD":
            offset, start, size = int(parts[1], 16), int(parts[2], 16), int(parts[5], 16)
            if start <= vaddr < start + size:
                return vaddr - start + offset
    raise AssertionError("no segment")


@pytest.mark.skipif(shutil.which("nm") is None or shutil.which("readelf") is None, reason="needs binutils")
@pytest.mark.parametrize("binary,symbol", [("libc", "malloc"), ("/usr/sbin/apache2", "ap_process_async_request")])
def test_symbol_offset_matches_binutils(binary, symbol):
    if binary == "libc":
        binary = next(str(p) for p in Path("/lib").glob("*-linux-gnu/libc.so.6"))
    if not Path(binary).exists():
        pytest.skip(f"{binary} not installed")
    assert symbol_offset(binary, symbol) == _binutils_offset(binary, symbol)


def test_symbol_offset_errors_name_the_problem(tmp_path):
    libc = next(Path("/lib").glob("*-linux-gnu/libc.so.6"))
    with pytest.raises(TraceError, match="no defined symbol 'no_such_function'"):
        symbol_offset(libc, "no_such_function")
    (tmp_path / "x").write_text("not elf")
    with pytest.raises(TraceError, match="not a readable ELF"):
        symbol_offset(tmp_path / "x", "main")
    with pytest.raises(TraceError, match="not found"):
        symbol_offset(tmp_path / "missing", "main")


# -- requests ------------------------------------------------------------------------------------
def _events(rows: list[tuple]) -> pa.Table:
    """rows of (ts, tid, kind, name); the other columns get neutral values."""
    n = len(rows)
    cols = {
        "ts": [r[0] for r in rows],
        "cpu": [0] * n,
        "tid": [r[1] for r in rows],
        "pid": [r[1] for r in rows],
        "comm": ["apache2"] * n,
        "kind": [r[2] for r in rows],
        "name": [r[3] for r in rows],
        "entry": [1 if r[2] == "syscall" else 0 for r in rows],
        "ret": [None] * n,
        "target_tid": [None] * n,
        "state": [None] * n,
    }
    arrays = [pa.array(cols[f.name]).cast(f.type) for f in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def test_cut_requests_global_rule_by_hand():
    table = _events(
        [
            (0, 1, "probe", "req_end"),  # an end without its begin: dropped
            (1, 1, "probe", "req_begin"),  # request A on tid 1
            (2, 1, "syscall", "read"),
            (3, 2, "probe", "req_begin"),  # request B on tid 2, overlapping A
            (4, 2, "syscall", "read"),
            (5, 3, "sched", "sched_switch"),  # not a syscall: not counted
            (6, 1, "syscall", "write"),
            (7, 1, "probe", "req_end"),
            (8, 2, "syscall", "close"),
            (9, 2, "probe", "req_end"),
            (10, 1, "probe", "req_begin"),  # still open when the capture stops: dropped
            (11, 1, "syscall", "read"),
        ]
    )
    req = cut_requests(table).to_pydict()
    assert req["tid"] == [1, 2]
    assert req["duration_ns"] == [6, 6]
    # global mode: every syscall between begin and end, whichever thread made it
    assert req["length"] == [3, 3]
    assert (req["row_begin"], req["row_end"]) == ([1, 3], [7, 9])


def test_schedule_alternates_and_separates_splits():
    blocks = schedule(list(PAPER_SEVEN), rounds=4)
    behaviours = [b.behaviour for b in blocks]
    assert len(behaviours) == 4 * 2 * len(NOVELTIES) and len(NOVELTIES) == 6  # per round: N, novelty, ...
    assert all(a == "normal" or b == "normal" for a, b in zip(behaviours, behaviours[1:], strict=False))
    by_split = {}
    for b in blocks:
        by_split.setdefault(b.split, []).append(b)
    for novelty in NOVELTIES:
        assert len(by_split[f"valid_ood_{novelty}"]) == 2 and len(by_split[f"test_ood_{novelty}"]) == 2
    normal = [b for b in blocks if b.behaviour == "normal"]
    assert [b.split for b in normal].count("train") == 12  # 2:1:1
    assert [b.split for b in normal].count("valid_id") == [b.split for b in normal].count("test_id") == 6
    assert {b.split for b in normal} == {"train", "valid_id", "test_id"}
    assert splits_of(blocks)[:4] == ["train", "valid_id", "test_id", "valid_ood_connection"]
    with pytest.raises(OptionError, match=r"rounds: 1 is out of range; valid: an integer 2 <= rounds <= 1000"):
        schedule(["normal", "cpu"], rounds=1)


def test_behaviours_parse_and_reject():
    assert [b.name for b in parse_behaviours("all")] == [*PAPER_SEVEN, "ssl_https"]
    assert [b.name for b in parse_behaviours("paper")] == list(PAPER_SEVEN)
    assert [b.name for b in parse_behaviours("cpu,normal,cpu")] == ["cpu", "normal"]
    with pytest.raises(TraceError, match=r"unknown behaviour.*'disk'.*valid: normal, connection, cpu"):
        parse_behaviours("normal,disk")


def test_server_configuration_per_behaviour(tmp_path):
    stack = Stack(tmp_path)
    normal = stack.apache_conf(BEHAVIOURS["normal"])
    assert "MaxRequestWorkers 400" in normal and "KeepAlive On" in normal and "mod_ssl.so" in normal
    assert "mpm_event" in normal and "dumpio" not in normal
    listens = re.findall(r"^Listen (\S+)", normal, re.M)
    assert listens and all(a.startswith("127.0.0.1:") for a in listens)
    assert "MaxRequestWorkers 25" in stack.apache_conf(BEHAVIOURS["connection"])
    assert "KeepAlive Off" in stack.apache_conf(BEHAVIOURS["socket"])
    assert "ssl" not in stack.apache_conf(BEHAVIOURS["ssl"])
    assert "dumpio:trace7" in stack.apache_conf(BEHAVIOURS["io"])
    if list(Path("/usr/lib/php").glob("20*/pdo_mysql.so")):
        assert "zend_extension = opcache" in stack.php_ini(BEHAVIOURS["normal"])
        assert "opcache" not in stack.php_ini(BEHAVIOURS["opcache"])


def test_parse_wrk_summary():
    text = "Running 3s test @ http://127.0.0.1:1/index.php\n  6700 requests in 3.00s, 1.4MB read\n"
    got = parse_wrk(text + "  Non-2xx or 3xx responses: 2\n")
    assert got["requests"] == 6700 and got["seconds"] == 3.0 and got["non_2xx"] == 2
    assert parse_wrk("  300 requests in 1.00m, 64KB read")["seconds"] == 60.0
    with pytest.raises(TraceError, match="no summary"):
        parse_wrk("connection refused")


# -- metrics and the sanity model ----------------------------------------------------------------
def test_auroc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    neg, pos = rng.integers(0, 5, 200).astype(float), rng.integers(1, 6, 150).astype(float)  # many ties
    expected = roc_auc_score(np.r_[np.zeros(200), np.ones(150)], np.r_[neg, pos])
    assert auroc(neg, pos) == pytest.approx(expected, abs=1e-12)
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0


def test_ngram_perplexity_by_hand():
    model = NgramModel.fit([np.array(["a", "b", "a", "b"])], order=2)
    # bigrams with [START]: (S,a) (a,b) (b,a) (a,b): p(a|S)=1, p(b|a)=1, p(a|b)=1
    assert model.perplexity(np.array(["a", "b", "a"])) == pytest.approx(1.0)
    # an unseen bigram (b,b) gets 1/|V| with V = {[START], [UNKNOWN], a, b}
    expected = np.exp(-(np.log(1.0) + np.log(1.0) + np.log(1 / 4)) / 3)
    assert model.perplexity(np.array(["a", "b", "b"])) == pytest.approx(expected)


# -- the shipped sample ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample():
    return load_dataset(SAMPLE_DIR)


def test_sample_is_small_complete_and_self_describing(sample):
    size = sum(f.stat().st_size for f in SAMPLE_DIR.rglob("*") if f.is_file())
    assert size <= 20 * 1024 * 1024
    m = sample.manifest
    assert {b["behaviour"] for b in m["blocks"]} == {*PAPER_SEVEN, "ssl_https"}
    assert {"train", "valid_id", "test_id"} <= set(sample.splits)
    assert all(f"{s}_ood_{n}" in sample.splits for n in NOVELTIES for s in ("valid", "test"))
    assert 2000 <= sample.requests.num_rows <= 20000
    assert "python -m shared.traces collect" in m["how"] and m["host"]["kernel"]
    assert m["sanity"]["passed"] and abs(m["sanity"]["id_vs_id_auroc"] - 0.5) <= m["sanity"]["tolerance"]
    assert m["flagged_blocks"] == []
    assert sum(v["requests"] for v in m["splits"].values()) == sample.requests.num_rows


def test_sample_sequences_agree_with_the_requests_table(sample):
    req = sample.split("valid_id").to_pydict()
    seqs = list(sample.sequences("valid_id"))
    assert [len(s["name"]) for s in seqs] == req["length"]
    first = seqs[0]
    assert len(first["ts"]) > 1 and set(first["entry"]) <= {1, 2} and np.all(np.diff(first["ts"]) >= 0)
    assert req["begin_ns"][0] <= first["ts"][0] and first["ts"][-1] <= req["end_ns"][0]
    thread = next(sample.sequences("valid_id", mode="thread"))
    assert set(thread["tid"]) == {req["tid"][0]} and len(thread["name"]) < len(first["name"])


def test_sample_stats_are_the_papers_table(sample):
    stats = {s.split: s for s in sample.stats()}
    train = sample.split("train")
    assert stats["train"].requests == train.num_rows
    assert stats["train"].length_mean == pytest.approx(np.mean(train.column("length").to_numpy()))
    assert stats["train"].duration_ms_mean == pytest.approx(np.mean(train.column("duration_ns").to_numpy()) / 1e6)
    # IO (mod_dumpio logs every byte) makes requests longer, as in the paper (1828 vs 1106 events)
    assert stats["test_ood_io"].length_mean > 1.3 * stats["test_id"].length_mean


def test_corrupt_or_modified_files_are_named(tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(SAMPLE_DIR, copy)
    victim = sorted((copy / "events").glob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(TraceError, match=re.escape(victim.name) + ".*checksum"):
        load_dataset(copy)
    ds = load_dataset(copy, verify=False)
    with pytest.raises(TraceError, match=re.escape(victim.name) + ".*not a readable Parquet"):
        ds.events(victim.stem)
    with pytest.raises(TraceError, match="no manifest"):
        load_dataset(tmp_path)
    with pytest.raises(TraceError, match="unknown split 'bogus'; valid: train"):
        ds.split("bogus")


# -- the paper's CTF format ----------------------------------------------------------------------


def _need_bt2():
    try:
        import bt2  # noqa: F401
    except ImportError:
        pytest.skip("python3-bt2 not installed (make setup as root installs it)")


def test_ctf_reader_applies_the_papers_rule(tmp_path):
    _need_bt2()
    from shared.traces.ctf import convert_ctf, read_ctf

    events = read_ctf(FIXTURES / "ctf" / "train")
    assert events.schema == SCHEMA
    got = events.to_pydict()
    assert got["name"][:3] == ["req_begin", "read", "read"] and got["entry"][1:3] == [1, 2]
    assert got["ret"][2] == 120 and got["ret"][4] == -11 and got["comm"][4] == "php-fpm"
    assert got["cpu"][3] == 1
    ds = load_dataset(convert_ctf(FIXTURES / "ctf", tmp_path / "ds"))
    req = ds.split("train").to_pydict()
    # the linger enter (connection_state 6) is skipped, so two requests remain
    assert req["tid"] == [101, 102] and req["length"] == [6, 2] and req["duration_ns"] == [800, 300]
    seq = next(ds.sequences("train"))
    assert list(seq["name"]) == ["read", "read", "sendto", "sendto", "writev", "writev"]


def test_ctf_errors_name_the_file(tmp_path):
    _need_bt2()
    from shared.traces.ctf import convert_ctf

    with pytest.raises(TraceError, match="no CTF metadata"):
        convert_ctf(tmp_path, tmp_path / "out")
    bad = tmp_path / "bad" / "kernel"
    bad.mkdir(parents=True)
    (bad / "metadata").write_text("/* CTF 1.8 */ this is not metadata")
    with pytest.raises(TraceError, match=re.escape(str(tmp_path / "bad"))):
        convert_ctf(tmp_path / "bad", tmp_path / "out")


# -- the command line ----------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shared.traces", *args], capture_output=True, text=True, cwd=REPO)


def test_cli_inspect_prints_the_dataset_table():
    proc = _cli("inspect", str(SAMPLE_DIR))
    assert proc.returncode == 0, proc.stderr
    assert "| split | requests |" in proc.stdout and "| test_ood_io |" in proc.stdout
    assert "sanity:" in proc.stdout


def test_cli_rejects_unknown_behaviour():
    proc = _cli("collect", "--out", "/tmp/never", "--behaviours", "normal,disk")
    assert proc.returncode == 2 and "valid: normal, connection, cpu, io, opcache, socket, ssl" in proc.stderr


def test_collect_without_root_points_to_the_sample(monkeypatch):
    from shared.traces import tracefs

    monkeypatch.setattr(tracefs.os, "geteuid", lambda: 1000)
    with pytest.raises(TraceError, match="needs root.*shared/traces/sample"):
        tracefs.tracefs_root()


def test_sample_manifest_is_json_with_checksums():
    manifest = json.loads((SAMPLE_DIR / "manifest.json").read_text())
    assert set(manifest["files"]) == {"requests.parquet"} | {
        f"events/{p.name}" for p in (SAMPLE_DIR / "events").glob("*.parquet")
    }


def test_readme_tables_match_the_sample_and_bench_results():
    from shared.traces.readme import update

    assert not update(write=False), "run: python -m shared.traces readme"


# -- option ranges: checked before anything touches tracefs or starts a server -----------------------
@pytest.fixture
def untouchable(monkeypatch) -> list[str]:
    """tracefs, the mount, the package check, the servers, the tracer and the dataset builder: each fails
    the test if reached. Returns the names of those that were reached."""
    from shared.traces import bench, collect, server, tracefs

    reached: list[str] = []

    def forbid(name: str):
        def called(*_a, **_k):
            reached.append(name)
            raise AssertionError(f"{name} was reached")

        return called

    traps = [(tracefs, "tracefs_root"), (collect, "tracefs_root"), (bench, "tracefs_root"),
             (collect, "check_installed"), (server, "check_installed"), (bench, "check_installed"),
             (collect, "Stack"), (bench, "Stack"), (collect, "Tracer"), (collect, "build_dataset")]  # fmt: skip
    for mod, name in traps:
        monkeypatch.setattr(mod, name, forbid(f"{mod.__name__.rsplit('.', 1)[-1]}.{name}"))
    monkeypatch.setattr(tracefs.subprocess, "run", forbid("mount"))
    return reached


BAD_OPTIONS = [
    ("requests", 0), ("requests", 1_000_001), ("requests", 2.5), ("rounds", 1), ("rounds", 1001), ("seed", -1),
    ("seed", 2**32), ("warmup", -1), ("threads", 0), ("connections", 0),
    ("rate", 0), ("rate", 33),  # 1,000 requests at 33/s take more than half of wrk's 60 s
    ("rate", 5001), ("cpu_workers", 0), ("cpu_workers", 257), ("queue_connections", 25),  # not above 25 workers
    ("keep", -1), ("keep", 1001),  # more than the 1,000 traced requests per block
    ("nice", -21), ("nice", 20),
    ("buffer_kb", 0), ("boundaries", "sometimes"),
]  # fmt: skip


@pytest.mark.parametrize("option,value", BAD_OPTIONS, ids=[f"{o}={v}" for o, v in BAD_OPTIONS])
def test_collect_options_out_of_range_touch_nothing(tmp_path, untouchable, option, value):
    from shared.traces.collect import CollectOptions, collect

    out = tmp_path / "ds"
    with pytest.raises(ValueError, match=rf"^{option}: {re.escape(repr(value))} is (out of range|unknown); valid: "):
        CollectOptions(out=out, behaviours=["io"], **{option: value})
    opts = CollectOptions(out=out, behaviours=["io"])
    setattr(opts, option, value)  # changed after construction: collect checks again first
    with pytest.raises(OptionError, match=rf"^{option}: "):
        collect(opts)
    assert untouchable == [] and not out.exists()


def test_the_forbidden_entry_points_are_wired(tmp_path, untouchable):
    """The control for the test above: a valid collection does reach tracefs (here, the trap)."""
    from shared.traces.collect import CollectOptions, collect

    with pytest.raises(AssertionError, match="collect.tracefs_root was reached"):
        collect(CollectOptions(out=tmp_path / "ds", behaviours=["io"], rate=34))
    assert untouchable == ["collect.tracefs_root"]


def test_error_names_the_valid_range():
    from shared.traces.collect import CollectOptions

    with pytest.raises(OptionError) as info:
        CollectOptions(out="x", rate=20)
    msg = str(info.value)
    assert msg.startswith("rate: 20 is out of range; valid: an integer 34 <= rate <= 5000")
    assert "1000 requests per load run must fit in half of wrk's 60 s cap" in msg and isinstance(info.value, ValueError)
    assert (info.value.option, info.value.value) == ("rate", 20)
    CollectOptions(out="x", requests=300, warmup=0, rate=10)  # 300 requests at 10/s: 30 s, fits


BAD_FLAGS = [
    ("collect", "--requests", "0"), ("collect", "--rounds", "1"), ("collect", "--seed", "-1"),
    ("collect", "--warmup", "-5"), ("collect", "--rate", "-1"), ("collect", "--rate", "100000"),
    ("collect", "--cpu-workers", "0"), ("collect", "--queue-connections", "10"), ("collect", "--keep", "5000"),
    ("collect", "--nice", "99"),
    ("collect", "--connections", "0"), ("collect", "--boundaries", "sometimes"), ("bench", "--seconds", "0"),
    ("bench", "--repeats", "0"), ("ctf", "--skip", "-1"),
]  # fmt: skip


@pytest.mark.parametrize("command,flag,value", BAD_FLAGS, ids=[f"{c}{f}={v}" for c, f, v in BAD_FLAGS])
def test_cli_rejects_out_of_range_options_first(tmp_path, capsys, untouchable, command, flag, value):
    from shared.traces.__main__ import main

    out = tmp_path / "out"
    args = [command, str(tmp_path / "src"), "--out", str(out)] if command == "ctf" else [command, "--out", str(out)]
    with pytest.raises(SystemExit) as info:
        main([*args, flag, value])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("usage: python -m shared.traces " + command), err
    shown = repr(int(value)) if value.lstrip("-").isdigit() else repr(value)
    problem = "is unknown" if flag == "--boundaries" else "is out of range"
    last = err.splitlines()[-1]
    assert last.startswith(f"python -m shared.traces {command}: error: {flag} {shown} {problem}; valid: "), last
    assert untouchable == [] and not out.exists()


def test_load_server_bench_and_ctf_check_their_numbers(tmp_path, untouchable):
    from shared.traces.bench import run_bench
    from shared.traces.ctf import convert_ctf
    from shared.traces.load import Load
    from shared.traces.server import Stack

    with pytest.raises(OptionError, match=r"^connections: 1 is out of range; valid: an integer 2 <= connections"):
        Load(threads=2, connections=1)
    with pytest.raises(OptionError, match=r"^max_seconds: 0 "):
        Load(max_seconds=0)
    with pytest.raises(OptionError, match=r"^seed: -3 "):
        Stack(tmp_path, seed=-3)
    with pytest.raises(OptionError, match=r"^repeats: 0 "):
        run_bench(tmp_path / "b", repeats=0)
    with pytest.raises(OptionError, match=r"^skip: -1 "):
        convert_ctf(tmp_path, tmp_path / "c", skip=-1)
    assert untouchable == [] and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


# -- collecting the root-only tests touches nothing --------------------------------------------------
_COLLECT_ONLY = """
import json, os, sys
import pytest
import shared.traces.server as server
import shared.traces.tracefs as tracefs

reached = []
def trap(name):
    def called(*_a, **_k):
        reached.append(name)
        raise RuntimeError(name + " reached while collecting")
    return called

os.geteuid = lambda: 0  # as root: a root-gated check at import would go on to the traps
tracefs.tracefs_root = trap("tracefs_root")
tracefs.subprocess.run = trap("subprocess.run")  # the mount
server.check_installed = trap("check_installed")
report = {}
for path in sys.argv[1:]:
    reached.clear()
    rc = pytest.main(["--co", "-q", "-p", "no:cacheprovider", path])
    report[path] = {"rc": int(rc), "reached": list(reached)}
print("REPORT " + json.dumps(report))
"""


def test_collecting_the_tracefs_tests_touches_nothing(tmp_path):
    """`pytest --co tests/test_traces_collect.py` (as root, even) neither mounts tracefs nor looks for the
    servers; the control, a module that checks at import, is caught by the same traps."""
    control = tmp_path / "test_checks_at_import.py"
    control.write_text(
        "from shared.traces.tracefs import tracefs_root\n"
        "try:\n    tracefs_root()\nexcept RuntimeError:\n    pass\n"
        "def test_nothing():\n    pass\n"
    )
    real = REPO / "tests" / "test_traces_collect.py"
    proc = subprocess.run([sys.executable, "-c", _COLLECT_ONLY, str(control), str(real)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")), None)
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(line.removeprefix("REPORT "))
    assert report[str(control)] == {"rc": 0, "reached": ["tracefs_root"]}
    assert report[str(real)]["reached"] == [] and report[str(real)]["rc"] == 0, proc.stdout[-2000:]
    assert "test_collection_end_to_end" in proc.stdout and "test_collector_leaves_nothing_behind" in proc.stdout


# -- malformed manifests -------------------------------------------------------------------------------
@pytest.fixture
def sample_copy(tmp_path) -> Path:
    """The sample's manifest (a copy to break) beside links to its tables."""
    copy = tmp_path / "ds"
    copy.mkdir()
    shutil.copy(SAMPLE_DIR / "manifest.json", copy / "manifest.json")
    (copy / "requests.parquet").symlink_to(SAMPLE_DIR / "requests.parquet")
    (copy / "events").symlink_to(SAMPLE_DIR / "events")
    return copy


def _break(copy: Path, change) -> Path:
    path = copy / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


MALFORMED = {
    "no splits": (lambda m: m.pop("splits"), "'splits' is missing; expected an object of split name"),
    "splits a list": (lambda m: m.update(splits=["train"]), "'splits' is of type list; expected an object"),
    "no splits at all": (lambda m: m.update(splits={}), "'splits' is empty"),
    "split without blocks": (lambda m: m["splits"]["train"].pop("blocks"), "'splits.train.blocks' is missing"),
    "no blocks": (lambda m: m.pop("blocks"), "'blocks' is missing; expected a list"),
    "block without split": (lambda m: m["blocks"][3].pop("split"), r"'blocks\[3\].split' is missing"),
    "block of no split": (lambda m: m["blocks"][0].update(split="nope"), r"'blocks\[0\].split' is 'nope', not one"),
    "no host kernel": (lambda m: m["host"].pop("kernel"), "'host.kernel' is missing"),
    "created a number": (lambda m: m.update(created=3), "'created' is of type int; expected a time string"),
    "no files": (lambda m: m.pop("files"), "'files' is missing"),
    "requests unlisted": (lambda m: m["files"].pop("requests.parquet"), "'files.requests.parquet' is missing"),
    "size a string": (
        lambda m: m["files"]["requests.parquet"].update(bytes="1"),
        "'files.requests.parquet.bytes' is of type str; expected a size in bytes",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest_names_the_file_and_key(sample_copy, case):
    change, message = MALFORMED[case]
    path = _break(sample_copy, change)
    for verify in (True, False):
        with pytest.raises(ManifestError, match=rf"^{re.escape(str(path))}: manifest key {message}"):
            load_dataset(sample_copy, verify=verify)


def test_manifest_not_an_object_not_json_or_absent(sample_copy, tmp_path):
    path = sample_copy / "manifest.json"
    path.write_text("[1, 2]")
    top = rf"^{re.escape(str(path))}: manifest key \(the top level\) is of type list"
    with pytest.raises(ManifestError, match=top):
        load_dataset(sample_copy)
    path.write_text("{not json")
    with pytest.raises(ManifestError, match=rf"^{re.escape(str(path))}: not valid JSON"):
        load_dataset(sample_copy)
    with pytest.raises(TraceError, match=rf"^{re.escape(str(tmp_path / 'gone'))}: no such dataset folder"):
        load_dataset(tmp_path / "gone")


def test_a_block_without_its_events_file_is_named(tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(SAMPLE_DIR, copy)
    victim = sorted((copy / "events").glob("*.parquet"))[5]
    victim.unlink()
    message = rf"block '{victim.stem}' \(manifest key 'blocks\[5\]'\) has no {re.escape(str(victim))}"
    with pytest.raises(ManifestError, match=message):
        load_dataset(copy, verify=False)
    with pytest.raises(TraceError, match=re.escape(str(victim))):
        load_dataset(copy)
