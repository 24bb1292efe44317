"""Trace loaders (fmplex_sim.traces.formats): the public traces in ../shared/traces, ServeGen
generation, the native round trip, and one-line errors naming the file and line for bad input."""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import fmplex_sim.traces.formats  # noqa: F401  (registers the loaders)
from fmplex_sim.errors import InputError
from fmplex_sim.traces.base import TRACE_FORMATS, Trace
from fmplex_sim.traces.formats import write_native, write_native_trace

from conftest import PUBLIC_TRACES as TRACES
AZURE = "azure-llm-2023/AzureLLMInferenceTrace_{}.csv"
ALIBABA = "alibaba-genai-2026/lora_request_trace.csv"
MOONCAKE = "mooncake-2025/conversation_trace.jsonl"
SERVEGEN = "servegen-m-small"


def load(fmt: str, path, **kw) -> Trace:
    return TRACE_FORMATS.get(fmt)(str(path), **kw)



def check_shape(tr: Trace) -> None:
    n = len(tr)
    assert tr.arrival_s.dtype == np.float64 and tr.input_len.dtype == np.int32 and tr.output_len.dtype == np.int32
    assert tr.input_len.shape == (n,) and tr.output_len.shape == (n,)
    assert np.all(np.diff(tr.arrival_s) >= 0)
    if tr.task is not None:
        assert tr.task.dtype == np.int32 and tr.task.shape == (n,)
        assert n == 0 or 0 <= tr.task.min() <= tr.task.max() < len(tr.task_names)
    if tr.backbone is not None:
        assert tr.backbone.dtype == np.int32 and tr.backbone.max() < len(tr.backbone_names)


def data_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()[1:]]


def ns_of(stamp: str) -> int:
    """Nanoseconds since the epoch of 'YYYY-MM-DD HH:MM:SS[.fraction]', without numpy."""
    whole, _, frac = stamp.partition(".")
    sec = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").timestamp()
    return int(round(sec)) * 10**9 + int(frac.ljust(9, "0") or 0)


# ---------------------------------------------------------------------------- public traces


@pytest.mark.parametrize("kind,rows", [("conv", 19_366), ("code", 8_819)])
def test_azure(traces, kind, rows):
    path = traces / AZURE.format(kind)
    t0 = time.perf_counter()
    tr = load("azure", path)
    elapsed = time.perf_counter() - t0
    check_shape(tr)
    assert len(tr) == rows and tr.task is None and tr.backbone is None and tr.format == "azure"
    raw = data_rows(path)
    assert tr.arrival_s[0] == 0.0
    last = (ns_of(raw[-1][0]) - ns_of(raw[0][0])) / 1e9
    assert tr.arrival_s[-1] == pytest.approx(last, abs=1e-9) and tr.span_s == tr.arrival_s[-1]
    assert tr.arrival_s[1] == pytest.approx((ns_of(raw[1][0]) - ns_of(raw[0][0])) / 1e9, abs=1e-9)
    for i in (0, 1, 2, rows - 1):
        assert (tr.input_len[i], tr.output_len[i]) == (int(raw[i][1]), int(raw[i][2]))
    assert elapsed < 1.0


def test_azure_conv_exact_span(traces):
    tr = load("azure", traces / AZURE.format("conv"))
    # 2023-11-16 18:15:46.6805900 -> 2023-11-16 19:14:08.4025270
    assert tr.arrival_s[-1] == pytest.approx(3501.721937, abs=1e-9)


def test_alibaba(traces):
    path = traces / ALIBABA
    tr = load("alibaba", path)
    check_shape(tr)
    assert len(tr) == 26_823
    assert len(tr.task_names) == 4_247  # tenant groups
    # 86 base-model ids plus "(missing)" for the 25 PENDING rows without one: 87 as PROVENANCE counts
    assert len(tr.backbone_names) == 87 and "(missing)" in tr.backbone_names
    assert int((tr.backbone == tr.backbone_names.index("(missing)")).sum()) == 25
    raw = data_rows(path)
    assert tr.arrival_s[0] == 0.0
    assert tr.arrival_s[-1] == (ns_of(raw[-1][0]) - ns_of(raw[0][0])) / 1e9  # file is in time order
    assert tr.task_names[:2] == ("G0000", "G0001") and tr.backbone_names[:2] == ("M0000", "M0001")
    assert list(tr.input_len[:3]) == [63, 93, 93] and not tr.output_len.any()
    assert [tr.task_names[i] for i in tr.task[:3]] == [r[4] for r in raw[:3]]
    assert tr.task_names[tr.task[-1]] == raw[-1][4] and tr.backbone_names[tr.backbone[-1]] == raw[-1][9]
    # every status is kept as an arrival
    assert len(tr) == sum(1 for r in raw if r[2] in ("SUCCEED", "FAILED", "PENDING", "PROCESSING"))


def test_mooncake(traces):
    path = traces / MOONCAKE
    tr = load("mooncake", path)
    check_shape(tr)
    assert len(tr) == 12_031 and tr.task is None
    assert tr.arrival_s[0] == 0.0 and tr.arrival_s[-1] == 3536.999 and tr.span_s == 3536.999
    with path.open() as fh:
        first = [json.loads(next(fh)) for _ in range(3)]
    assert [int(x) for x in tr.input_len[:3]] == [o["input_length"] for o in first]
    assert [int(x) for x in tr.output_len[:3]] == [o["output_length"] for o in first]


def servegen_expectation(folder: Path, cid: int, lo: float, hi: float) -> tuple[float, float]:
    """Expected count and a variance bound for client cid's arrivals in [lo, hi)."""
    x = np.loadtxt(folder / f"chunk-{cid}-trace.csv", delimiter=",", usecols=(0, 1, 2), ndmin=2)
    overlap = np.clip(np.minimum(x[:, 0] + 600, hi) - np.maximum(x[:, 0], lo), 0, None)
    mean = x[:, 1] * overlap
    return float(mean.sum()), float((mean * np.maximum(x[:, 2] ** 2, 1)).sum())


@pytest.fixture(scope="module")
def servegen_hour(traces):
    t0 = time.perf_counter()
    tr = load("servegen", traces / SERVEGEN, seed=7, window=(3 * 86400, 3600))
    return tr, time.perf_counter() - t0


def test_servegen_window_counts(traces, servegen_hour):
    tr, elapsed = servegen_hour
    check_shape(tr)
    assert len(tr.task_names) == 43
    assert tr.task_names[:3] == ("client-0", "client-1", "client-2") and tr.task_names[-1] == "client-42"
    lo, hi = 3 * 86400, 3 * 86400 + 3600
    assert tr.arrival_s[0] >= lo and tr.arrival_s[-1] < hi and tr.span_s == 14 * 86400
    assert set(np.unique(tr.input_len)) == {256} and not tr.output_len.any()
    counts = np.bincount(tr.task, minlength=43)
    total_e = total_v = 0.0
    for pos, name in enumerate(tr.task_names):
        e, v = servegen_expectation(traces / SERVEGEN, int(name.split("-")[1]), lo, hi)
        total_e, total_v = total_e + e, total_v + v
        assert abs(counts[pos] - e) <= 6 * math.sqrt(v) + 5, name
    assert abs(len(tr) - total_e) <= 6 * math.sqrt(total_v)
    assert len(tr) > 1_000_000  # m-small is a busy service: millions of requests an hour
    assert elapsed < 3.0  # about 0.5 s on a quiet 2-core machine


def test_servegen_seeds_and_client_isolation(traces, servegen_hour):
    folder = traces / SERVEGEN
    win = (3 * 86400, 600)
    a = load("servegen", folder, seed=7, window=win)
    b = load("servegen", folder, seed=7, window=win)
    c = load("servegen", folder, seed=8, window=win)
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.task, b.task)
    assert len(a) != len(c) or not np.array_equal(a.arrival_s, c.arrival_s)
    # the 600 s window equals the first 600 s of the one-hour load
    hour, _ = servegen_hour
    first = hour.arrival_s < win[0] + win[1]
    assert np.array_equal(hour.arrival_s[first], a.arrival_s) and np.array_equal(hour.task[first], a.task)
    # one file alone gives that client the same arrivals as the whole folder
    pos = a.task_names.index("client-11")
    one = load("servegen", folder / "chunk-11-trace.csv", seed=7, window=win)
    assert one.task_names == ("client-11",)
    assert len(one) > 0 and np.array_equal(one.arrival_s, a.arrival_s[a.task == pos])


def test_servegen_whole_small_client_and_guard(traces):
    path = traces / SERVEGEN / "chunk-34-trace.csv"  # about 20,300 requests in 14 days
    whole = load("servegen", path, seed=3)
    check_shape(whole)
    e, v = servegen_expectation(traces / SERVEGEN, 34, 0, math.inf)
    assert abs(len(whole) - e) <= 6 * math.sqrt(v) and whole.span_s == 14 * 86400
    cut = load("servegen", path, seed=3, window=(86400.0, 7200.0))
    inside = (whole.arrival_s >= 86400) & (whole.arrival_s < 86400 + 7200)
    assert np.array_equal(cut.arrival_s, whole.arrival_s[inside])
    rest = load("servegen", path, seed=3, window=(13 * 86400, None))  # None: to the end
    assert np.array_equal(rest.arrival_s, whole.arrival_s[whole.arrival_s >= 13 * 86400])
    with pytest.raises(InputError, match=r"servegen-m-small: the whole trace holds about .* requests"):
        load("servegen", traces / SERVEGEN)


# ---------------------------------------------------------------------------- ServeGen rule


def write_servegen(folder: Path, cid: int, rows: list[str]) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"chunk-{cid}-trace.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    "pattern,arg1,cv",
    [
        ("Gamma", "0.25", 2.0),  # shape 1/cv^2 as in the public data
        ("Gamma", "", 2.0),  # no arg1: shape from cv
        ("Weibull", "0.5", 2.2360679),  # Weibull k=0.5 has cv sqrt(5)
        ("Weibull", "nan", 2.2360679),  # invalid arg1: shape solved from cv
        ("Exponential", "", 1.0),
        ("Lognormal", "0.3", 1.0),  # unknown family: exponential fallback
    ],
)
def test_servegen_generation_rule(tmp_path, pattern, arg1, cv):
    rate = 20.0
    rows = [f"{600 * i},{rate},{cv},{pattern},{arg1},0.05" for i in range(40)]
    tr = load("servegen", write_servegen(tmp_path, 5, rows), seed=1)
    assert tr.task_names == ("client-5",) and tr.span_s == 40 * 600
    expected = rate * 600 * 40
    assert abs(len(tr) - expected) < 6 * math.sqrt(expected * cv**2) + 40 * cv**2
    within = np.concatenate([np.diff(tr.arrival_s[(tr.arrival_s >= 600 * i) & (tr.arrival_s < 600 * (i + 1))])
                             for i in range(40)])
    assert within.mean() == pytest.approx(1 / rate, rel=0.1)
    assert within.std() / within.mean() == pytest.approx(cv, rel=0.15)
    # each window starts afresh: its first arrival is one gap after its start
    assert tr.arrival_s[0] > 0


def test_servegen_zero_rate_windows_are_empty(tmp_path):
    rows = ["0,0,0,,0,0", "600,1.0,1.0,Gamma,1.0,0.1", "1200,0,0,,0,0"]
    tr = load("servegen", write_servegen(tmp_path, 0, rows))
    assert len(tr) > 0 and tr.arrival_s.min() >= 600 and tr.arrival_s.max() < 1200 and tr.span_s == 1800
    assert len(load("servegen", tmp_path, window=(1200, 600))) == 0


# ---------------------------------------------------------------------------- native


def test_native_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    n = 5000
    t = np.round(np.cumsum(rng.exponential(0.01, n)), 6)
    names = ("summarize", "classify-é", "qa")
    idx = rng.integers(0, 3, n).astype(np.int32)
    inp, out = rng.integers(0, 9000, n), rng.integers(0, 500, n)
    path = tmp_path / "t.csv"
    assert write_native(path, t, idx, inp, out, task_names=names) == n
    tr = load("native", path)
    check_shape(tr)
    np.testing.assert_allclose(tr.arrival_s, t, rtol=0, atol=5e-7)
    assert [tr.task_names[i] for i in tr.task] == [names[i] for i in idx]
    assert np.array_equal(tr.input_len, inp) and np.array_equal(tr.output_len, out)
    # written again, the file is byte for byte the same
    again = tmp_path / "again.csv"
    write_native_trace(again, tr)
    assert again.read_bytes() == path.read_bytes()


def test_native_placeholder_task_and_three_columns(tmp_path):
    tr = Trace("x", "azure", np.array([0.0, 0.5, 0.5]), np.array([1, 2, 3], np.int32), np.zeros(3, np.int32))
    path = tmp_path / "p.csv"
    write_native_trace(path, tr, default_task="azure-conv")
    back = load("native", path)
    assert back.task_names == ("azure-conv",) and list(back.arrival_s) == [0.0, 0.5, 0.5]
    write_native(tmp_path / "z.csv", [-0.0, 1.0], ["a", "b"], [5, 6])  # -0.0 is >= 0: written as 0
    assert (tmp_path / "z.csv").read_text().splitlines()[1] == "0.000000,a,5"
    write_native(tmp_path / "q.csv", [1.0, 2.0], ["a", "b"], [5, 6])
    assert (tmp_path / "q.csv").read_text() == "arrival_s,task,input_len\n1.000000,a,5\n2.000000,b,6\n"
    q = load("native", tmp_path / "q.csv")
    assert q.task_names == ("a", "b") and not q.output_len.any() and q.arrival_s[0] == 1.0
    with pytest.raises(InputError, match="comma"):
        write_native(tmp_path / "r.csv", [0.0], ["a,b"], [1])


def test_native_speed(tmp_path):
    n = 300_000
    rng = np.random.default_rng(2)
    path = tmp_path / "big.csv"
    write_native(path, np.cumsum(rng.exponential(0.001, n)), rng.integers(0, 100, n),
                 rng.integers(1, 4000, n), rng.integers(0, 400, n), task_names=[f"t{i}" for i in range(100)])
    t0 = time.perf_counter()
    tr = load("native", path)
    assert len(tr) == n and len(tr.task_names) == 100
    assert time.perf_counter() - t0 < 3.0  # about 0.3 s (1M rows: about 1.1 s)


# ---------------------------------------------------------------------------- malformed input

AZ_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens"
AZ_ROW = "2023-11-16 18:15:46.6805900,374,44"


def azure_file(tmp_path: Path, *rows: str, head: str = AZ_HEAD) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text("\n".join((head,) + rows) + "\n")
    return path


def expect_error(fmt: str, path: Path, line: int | None, *words: str, **kw) -> str:
    with pytest.raises(InputError) as info:
        load(fmt, path, **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    if line is not None:
        assert f": line {line}: " in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize(
    "rows,line,words",
    [
        ((AZ_ROW, "2023-11-16 18:15:47.0,abc,3"), 3, ("ContextTokens 'abc' is not a number",)),
        ((AZ_ROW, AZ_ROW, "2023-11-16 18:15:48.0,5"), 4, ("expected 3", "got 2")),
        ((AZ_ROW, "2023-11-16 18:15:48.0,5,-2"), 3, ("GeneratedTokens must be >= 0",)),
        ((AZ_ROW, "2023-11-16 18:15:48.0,5.5,2"), 3, ("not a whole number",)),
        ((AZ_ROW, "2023-11-16 25:15:48.0,5,2"), 3, ("TIMESTAMP '2023-11-16 25:15:48.0' is not a date",)),
        ((AZ_ROW, "16/11/2023 18:15,5,2"), 3, ("TIMESTAMP",)),
        ((AZ_ROW, "", AZ_ROW), 3, ("empty line",)),
        ((AZ_ROW, "2023-11-16 18:15:48.0,,2"), 3, ("ContextTokens is empty",)),
        ((AZ_ROW, "2023-11-16 18:15:48.0,nan,2"), 3, ("not a finite number",)),
        # the first bad line wins, whatever the column
        ((AZ_ROW, AZ_ROW, "2023-11-16 18:15:48.0,1,x", "bad,1,1"), 4, ("GeneratedTokens 'x'",)),
        ((AZ_ROW, "bad,1,1", "2023-11-16 18:15:48.0,1,x"), 3, ("TIMESTAMP 'bad'",)),
        ((AZ_ROW, "x,1,1", "too,many,fields,here"), 3, ("TIMESTAMP 'x'",)),
    ],
)
def test_azure_bad_rows(tmp_path, rows, line, words):
    expect_error("azure", azure_file(tmp_path, *rows), line, *words)


def test_bad_headers_and_files(tmp_path):
    msg = expect_error("azure", azure_file(tmp_path, AZ_ROW, head="TIMESTAMP,ContextTokens,Tokens"), 1)
    assert "unknown column 'Tokens'" in msg and "missing column 'GeneratedTokens'" in msg
    expect_error("azure", azure_file(tmp_path, AZ_ROW, head=AZ_ROW), 1, "unknown columns", "header line missing")
    expect_error("azure", azure_file(tmp_path), 2, "no requests after the header")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    expect_error("azure", empty, None, "empty")
    expect_error("azure", tmp_path / "nope.csv", None, "no such file")
    expect_error("azure", tmp_path, None, "is a folder")
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(AZ_HEAD.encode() + b"\n" + AZ_ROW.encode() + b"\n\x89PNG\x00\x01\xff\xfe")
    expect_error("azure", garbage, 3, "binary data")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"arrival_s,task,input_len\n0.0,caf\xe9,1\n")
    expect_error("native", latin, 2, "not UTF-8")
    msg = expect_error("alibaba", azure_file(tmp_path, AZ_ROW), 1, "missing columns")
    assert "'groupId'" in msg and "'TIMESTAMP'" in msg


def test_azure_crlf_and_unsorted_rows_are_read(tmp_path):
    path = tmp_path / "crlf.csv"
    path.write_bytes(
        b"TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:00:02.5,1,1\r\n"
        b"2023-11-16 18:00:01,2,2\r\n2023-11-16 18:00:02.5,3,3"
    )
    tr = load("azure", path)
    assert list(tr.arrival_s) == [0.0, 1.5, 1.5] and list(tr.input_len) == [2, 1, 3]  # stable sort


ALI_HEAD = ("gmt_create,predict_type,predict_status,exec_time_seconds,groupId,prompt_length,"
            "negative_prompt_length,num_images_per_prompt,num_inference_steps,checkpoint_model_version_id,num_lora")


def test_alibaba_rules_and_errors(tmp_path):
    path = tmp_path / "lora.csv"
    path.write_text("\n".join([
        ALI_HEAD,
        "2024-11-15 16:57:52,TXT_2_IMG,SUCCEED,32.0,G7,12.6,,1.0,30.0,M3,0",
        "2024-11-15 16:57:50,TXT_2_IMG,FAILED,32.0,G9,,,1.0,30.0,,0",
        "2024-11-15 16:57:52,TXT_2_IMG,PENDING,0.0,G9,4.0,,,,M3,1",
    ]) + "\n")
    tr = load("alibaba", path)
    assert list(tr.arrival_s) == [0.0, 2.0, 2.0]  # sorted stably by time
    assert tr.task_names == ("G9", "G7") and [tr.task_names[i] for i in tr.task] == ["G9", "G7", "G9"]
    assert tr.backbone_names == ("(missing)", "M3") and list(tr.input_len) == [0, 13, 4]
    bad = tmp_path / "bad.csv"
    bad.write_text(ALI_HEAD + "\n2024-11-15 16:57:52,TXT_2_IMG,SUCCEED,32.0,,12,,1.0,30.0,M3,0\n")
    expect_error("alibaba", bad, 2, "groupId is empty")
    bad.write_text(ALI_HEAD + "\n2024-11-15 16:57:52,TXT_2_IMG,SUCCEED,32.0,G1,-3,,1.0,30.0,M3,0\n")
    expect_error("alibaba", bad, 2, "prompt_length must be >= 0")


def test_mooncake_errors(tmp_path):
    path = tmp_path / "m.jsonl"
    good = '{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [1]}'
    cases = [
        ([good, "{not json"], 2, "not valid JSON"),
        ([good, good, '{"timestamp": 3, "input_length": 5}'], 3, "missing key 'output_length'"),
        ([good, '{"timestamp": "3", "input_length": 5, "output_length": 1}'], 2, "timestamp \"3\" is not a number"),
        ([good, '{"timestamp": 3, "input_length": -5, "output_length": 1}'], 2, "input_length must be >= 0"),
        ([good, "[1, 2]"], 2, "expected a JSON object"),
        ([good, "", good], 2, "empty line"),
        # json keeps the last of two values; which one the trace meant cannot be known
        ([good, '{"timestamp": 3, "input_length": 5, "output_length": 1, "timestamp": 9}'], 2,
         'key "timestamp" given twice'),
        ([good, good, '{"timestamp": 3, "input_length": 5, "output_length": 1, "x": {"a": 1, "a": 2}}'], 3,
         'key "a" given twice'),
    ]
    for lines, line, word in cases:
        path.write_text("\n".join(lines) + "\n")
        expect_error("mooncake", path, line, word)
    path.write_text('{"timestamp": 2500, "input_length": 5, "output_length": 2}\n'
                    '{"timestamp": 1000, "input_length": 6, "output_length": 3}\n')
    tr = load("mooncake", path)
    assert list(tr.arrival_s) == [0.0, 1.5] and list(tr.input_len) == [6, 5]


def test_native_errors(tmp_path):
    path = tmp_path / "n.csv"
    head = "arrival_s,task,input_len,output_len"
    cases = [
        ([head, "0.5,a,1,1", "0.25,a,1,1"], 3, "arrival_s 0.25 is smaller than 0.5"),
        ([head, "0.5,a,1,1", "-1,a,1,1"], 3, "arrival_s must be >= 0"),
        ([head, "0.5,a,1,1", "0.6,,1,1"], 3, "task is empty"),
        ([head, "0.5,a,1,1", "0.6,a,1"], 3, "expected 4"),
        ([head, "0.5,a,1,1", "0.6,a,1,1,9", "0.7,a,1"], 3, "expected 4"),
        ([head, "0.5,a,1,1", "0.6,a,x,1"], 3, "input_len 'x' is not a number"),
        ([head, "0.5,a,1,1", "0.6,a,1,1", "0.4,a,1,1", "0.9,a,q,1"], 4, "smaller"),
        ([head, "0.5,a,1,1", "0.4,a,z,1"], 3, "input_len 'z'"),
        ([head, "0.5,a,1,1", "0.4,a,1,1", "x,a,1,1"], 3, "arrival_s 0.4 is smaller"),  # before the bad value
        (["arrival_s,task,input_len,extra", "0.5,a,1,1"], 1, "unknown column 'extra'"),
        (["arrival_s,task,task,input_len", "0.5,a,a,1"], 1, "appears twice"),
    ]
    for lines, line, word in cases:
        path.write_text("\n".join(lines) + "\n")
        expect_error("native", path, line, word)
    path.write_text("task,input_len,arrival_s\n a ,3,0\nb,4,1.5\na,5,1.5\n")  # any column order
    tr = load("native", path)
    assert tr.task_names == ("a", "b") and list(tr.input_len) == [3, 4, 5] and tr.span_s == 1.5


def test_servegen_errors(tmp_path):
    good = "0,1.0,1.0,Gamma,1.0,0.1"
    cases = [
        ([good, "600,x,1.0,Gamma,1.0,0.1"], 2, "rate 'x' is not a number"),
        ([good, "600,1.0,1.0,Gamma"], 2, "expected 6"),
        ([good, "600,1,1,Gamma,1,1", "600,1,1,Gamma,1,1"], 3, "timestamp 600 is not larger than 600"),
        ([good, "600,-1,1,Gamma,1,1"], 2, "rate must be >= 0"),
    ]
    for rows, line, word in cases:
        path = write_servegen(tmp_path / "sg", 3, rows)
        expect_error("servegen", path, line, word)
    (tmp_path / "none").mkdir()
    expect_error("servegen", tmp_path / "none", None, "no chunk-<client>-trace.csv files")
    odd = tmp_path / "trace.csv"
    odd.write_text(good + "\n")
    expect_error("servegen", odd, None, "chunk-<client>-trace.csv")
    expect_error("servegen", tmp_path / "missing", None, "no such file or folder")
    with pytest.raises(InputError, match="window"):
        load("servegen", write_servegen(tmp_path / "ok", 1, [good]), window=(0, -5))
