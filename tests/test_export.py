"""`painters-gguf export`: a sequential plan as a GGUF whose stock llama.cpp logits are the patched
runtime's under the plan, bit for bit; per-layer metadata follows the new order; strings copied as
their bytes; an export of an export records the original model; refusals; no half file left."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gguf
import numpy as np
import pytest
from conftest import catalog_path
from test_archs_tiny import stock_logits
from test_eval_cli import run_cli
from test_runtime_tiny import TOKENS
from tiny_archs import FAMILIES
from tiny_llama import TinyWeights, Vocab, write_gguf

from painters_gguf import export, outputs
from painters_gguf.errors import PaintersError, PlanError
from painters_gguf.plan import Plan
from painters_gguf.runtime import Model

# skips, a reorder, repeats (written out and as a loop) and all at once, on 6 layers
PLANS = ["0,1,4,5", "1,0,3,2,5,4", "0,1,2,2,3,3,4,5", "0,2x3,5", "5,3,3,0"]


def patched_logits(path: Path, plan: Plan | None, tokens: list[int], n_ctx: int = 128) -> np.ndarray:
    with Model(path) as model, model.context(n_ctx=n_ctx, threads=2) as ctx:
        ctx.set_plan(plan)
        return ctx.logits(tokens)


def exported_matches(source: Path, text: str, tokens: list[int], stock_lib_dir: Path, tmp_path: Path) -> Path:
    """Export the plan, and check stock llama.cpp's logits on the file are the runtime's under the plan."""
    plan = Plan.parse(text)
    out = tmp_path / "exported.gguf"
    with Model(source) as model:
        exported = export.export(model, plan, out)
    assert exported.source_layers == tuple(step[0] for step in plan.executions())
    expected = patched_logits(source, plan, tokens)
    assert np.array_equal(stock_logits(stock_lib_dir, out, tokens, 128, tmp_path), expected)
    return out


@pytest.mark.parametrize("text", PLANS)
def test_llama_export_runs_as_the_plan_on_stock(tiny_gguf: Path, stock_lib_dir: Path, tmp_path: Path, text: str) -> None:
    exported_matches(tiny_gguf, text, TOKENS, stock_lib_dir, tmp_path)
    # not vacuous: the stock logits of the source itself differ from the plan's
    assert not np.array_equal(patched_logits(tiny_gguf, None, TOKENS), patched_logits(tiny_gguf, Plan.parse(text), TOKENS))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("text", ["1,0,3,2,5,4", "5,3,3,0"])
def test_every_family_exports_as_the_plan(
    family: str, text: str, stock_lib_dir: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Including gemma3 (its window pattern an array in the file) and gemma2 (no pattern key: the
    period 2 of its graph), whose layers move between sliding-window and global positions."""
    source = FAMILIES[family]().write(tmp_path_factory.mktemp(family) / f"tiny-{family}.gguf")
    out = exported_matches(source, text, TOKENS, stock_lib_dir, tmp_path)
    with Model(source) as model:
        swa = model.swa_layers()
    if swa:
        with Model(out) as exported:
            assert exported.swa_layers() == [i for i, layer in enumerate(Plan.parse(text).executions()) if layer[0] in swa]


def test_real_llama_export(smollm2_path: Path, stock_lib_dir: Path, tmp_path: Path) -> None:
    """SmolLM2 (Q4_1): the 30-layer model with layers 4-9 skipped and 14-17 repeated."""
    tokens = list(range(1000, 1040))
    exported_matches(smollm2_path, "0-3,10-17,14-29", tokens, stock_lib_dir, tmp_path)


def test_real_sliding_window_export(stock_lib_dir: Path, tmp_path: Path) -> None:
    """Gemma 3 270M (Q4_K_M): its file gives no pattern (the graph's period 6 puts the global
    layers at 5, 11, 17); the export moves global layer 11 to positions 7 and 8 (17 to 14)."""
    source = catalog_path("gemma3-270m")
    tokens = [2, *range(1000, 1040)]
    out = exported_matches(source, "0-6,11,11,12-17", tokens, stock_lib_dir, tmp_path)
    with Model(out) as exported:
        assert exported.swa_layers() == [i for i in range(exported.n_layer) if i not in (5, 7, 8, 14)]


def write_metadata_only(
    path: Path, arrays: dict[str, list[int]], n_layer: int = 4, values: dict[str, object] | None = None
) -> Path:
    """A GGUF of metadata only: the arrays as llama.KEY, and `values` (ints as uint32, else strings) as they are."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(n_layer)
    for key, array in arrays.items():
        writer.add_array(f"llama.{key}", array)
    for key, value in (values or {}).items():
        writer.add_key_value(key, value, gguf.GGUFValueType.UINT32 if isinstance(value, int) else gguf.GGUFValueType.STRING)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path


def copied_metadata(source: Path, layers: list[int], swa: set[int], tmp_path: Path) -> dict[str, object]:
    reader = gguf.GGUFReader(source)
    out = tmp_path / "copy.gguf"
    writer = gguf.GGUFWriter(str(out), "llama")
    export._copy_metadata(reader, writer, "llama", 4, layers, swa)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return {name: field.contents() for name, field in gguf.GGUFReader(out).fields.items()}


def test_per_layer_arrays_follow_the_new_order(tmp_path: Path) -> None:
    source = write_metadata_only(
        tmp_path / "meta.gguf",
        {
            "feed_forward_length": [10, 11, 12, 13],
            "attention.head_count": [4, 5, 6, 7],
            "attention.head_count_kv": [1, 2, 1, 2],
            "expert_feed_forward_length": [0, 8, 0, 9],
        },
    )
    fields = copied_metadata(source, [3, 0, 0], {0, 2}, tmp_path)
    assert fields["llama.block_count"] == 3
    assert fields["llama.feed_forward_length"] == [13, 10, 10]
    assert fields["llama.attention.head_count"] == [7, 4, 4]
    assert fields["llama.attention.head_count_kv"] == [2, 1, 1]
    assert fields["llama.expert_feed_forward_length"] == [9, 0, 0]
    assert fields["llama.attention.sliding_window_pattern"] == [False, True, True]


def test_unknown_per_layer_arrays_are_refused(tmp_path: Path) -> None:
    source = write_metadata_only(tmp_path / "meta.gguf", {"attention.mystery": [1, 2, 3, 4]})
    with pytest.raises(PaintersError, match=r"llama.attention.mystery holds 4 values"):
        copied_metadata(source, [0, 1], set(), tmp_path)


def test_parallel_plans_are_refused() -> None:
    with pytest.raises(PlanError, match="in parallel, which a stock llama.cpp cannot run"):
        export.sequential_layers(Plan.parse("0,{1,2},3"))
    assert export.sequential_layers(Plan.parse("0,2x2,1")) == [0, 2, 2, 1]


def test_cli_export_and_its_refusals(tiny_gguf: Path, tiny_weights: TinyWeights, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "skip.gguf"
    done = run_cli("export", "skip", "--n", "1", "-m", str(tiny_gguf), "-o", str(out), data=shared_data)
    assert "3 blocks (source layers 0-1,5) of 6" in done.stdout
    with Model(out) as model:
        assert (model.n_layer, model.meta("painters_gguf.plan")) == (3, "0-1,5")
    before = tiny_gguf.read_bytes()
    other_arch = write_gguf(tiny_weights, tmp_path / "tiny-baichuan.gguf", arch="baichuan")  # not covered yet
    target = str(tmp_path / "p.gguf")
    refusals = [
        (tiny_gguf, "0,{1,2},3", target, "in parallel"),
        (tiny_gguf, "0,9", target, "names layer 9"),
        (tiny_gguf, "0-5", str(tiny_gguf), "an input of this run"),
        (tiny_gguf, "0-5", str(tmp_path), "is a directory"),
        (tiny_gguf, "0-5x2", target, "repeats one step"),
        (other_arch, "0-3", target, "does not run layer plans"),
        (tmp_path / "none.gguf", "0-3", target, "no such file"),
    ]
    for model, plan, output, message in refusals:
        result = run_cli("export", plan, "-m", str(model), "-o", output, data=shared_data, check=False)
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "p.gguf").exists()
    assert tiny_gguf.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


# --- strings that are not UTF-8: GGUF strings are bytes, copied as they are ---

# a byte-level vocabulary of the tiny model's 97 tokens: printable ASCII, and three that are not UTF-8
# (gguf-py writes bytes as they are where Vocab says str)
NOT_UTF8_TOKENS = [bytes([byte]) for byte in range(0x21, 0x7F)] + [b"\xff\xfe", b"ok\xc3(", b"\xe2\x82"]
NOT_UTF8_VOCAB = Vocab(NOT_UTF8_TOKENS, [1] * len(NOT_UTF8_TOKENS), [b"a b", b"\xff \xfe"], "default", 0, 1)


def write_with_strings(
    weights: TinyWeights, path: Path, strings: dict[str | bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The tiny llama with NOT_UTF8_VOCAB, and `strings` (raw bytes, keys too) in place of its name."""

    def add_name(writer: gguf.GGUFWriter, name: str) -> None:
        for key, value in strings.items():
            writer.add_key_value(key, value, gguf.GGUFValueType.STRING)

    with monkeypatch.context() as patch:
        patch.setattr(gguf.GGUFWriter, "add_name", add_name)
        return write_gguf(weights, path, vocab=NOT_UTF8_VOCAB)


def raw_fields(path: Path) -> dict[str, list[bytes]]:
    """Every key's bytes as stored (length, name, type, value)."""
    return {name: [bytes(part) for part in field.parts] for name, field in gguf.GGUFReader(path).fields.items()}


def test_strings_that_are_not_utf8_are_copied_byte_for_byte(
    tiny_weights: TinyWeights, stock_lib_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name, tokens and merges that are not UTF-8 (and a file name that is not): the export keeps
    their bytes, and stock llama.cpp still runs it as the plan."""
    strings: dict[str | bytes, bytes] = {"general.name": b"tiny \xff\xfe", "general.description": b"caf\xe9 \xc3"}
    source = write_with_strings(tiny_weights, tmp_path / os.fsdecode(b"tiny-\xff.gguf"), strings, monkeypatch)
    out = exported_matches(source, "5,3,3,0", TOKENS, stock_lib_dir, tmp_path)
    before, after = raw_fields(source), raw_fields(out)
    assert set(after) - set(before) == {export.PLAN_KEY, export.SOURCE_KEY, export.SOURCE_SHA256_KEY}
    for name in before.keys() - {"llama.block_count"}:
        assert name.startswith("GGUF.") or after[name] == before[name], name  # GGUF.*: the header's counts
    assert after[export.SOURCE_KEY][-1] == b"tiny-\xff.gguf"
    tokens = gguf.GGUFReader(out).fields["tokenizer.ggml.tokens"]
    assert [bytes(tokens.parts[index]) for index in tokens.data] == NOT_UTF8_TOKENS
    with Model(out) as model:  # and the patched runtime loads it
        assert (model.n_layer, model.meta("general.name")) == (4, "tiny \ufffd\ufffd")


def test_a_key_that_is_not_utf8_is_one_line(
    tiny_weights: TinyWeights, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gguf-py cannot read a key name that is not UTF-8 (llama.cpp can): refused, nothing written."""
    source = write_with_strings(tiny_weights, tmp_path / "tiny.gguf", {b"general.\xff": b"x"}, monkeypatch)
    with Model(source) as model, pytest.raises(PaintersError, match="a key or tensor name is not UTF-8"):
        export.export(model, Plan.parse("0-3"), tmp_path / "out.gguf")
    result = run_cli("export", "0-3", "-m", str(source), "-o", str(tmp_path / "out.gguf"), data=shared_data, check=False)
    assert (result.returncode, len(result.stderr.strip().splitlines())) == (2, 1), result.stderr
    assert "not UTF-8, which gguf-py cannot read" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]


# --- an export of an export: the original model, the plans composed ---


def test_an_export_of_an_export_records_the_original(
    tiny_gguf: Path, stock_lib_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    first, second = tmp_path / "first.gguf", tmp_path / "second.gguf"
    with caplog.at_level(logging.DEBUG):
        with Model(tiny_gguf) as model:
            export.export(model, Plan.parse("0,2x3,5,4"), first)  # its blocks 0-5 are layers 0,2,2,2,5,4
            sha256 = model.sha256
        with Model(first) as model:
            exported = export.export(model, Plan.parse("5,1-2,4x2,0"), second)  # blocks 5,1,2,4,4,0
    # gguf-py warns of a key written twice through logging ("Duplicated key name")
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == [] and len(recwarn) == 0
    composed = "4,2,2,5x2,0"  # by hand: layers 4,2,2,5,5,0 of the original, the repeat kept a repeat
    fields = gguf.GGUFReader(second).fields
    recorded = {key: fields[key].contents() for key in (export.PLAN_KEY, export.SOURCE_KEY, export.SOURCE_SHA256_KEY)}
    assert recorded == {export.PLAN_KEY: composed, export.SOURCE_KEY: tiny_gguf.name, export.SOURCE_SHA256_KEY: sha256}
    assert [name for name in fields if name.startswith(export.PROVENANCE)] == list(recorded)  # each once
    assert exported.source_layers == (5, 1, 2, 4, 4, 0)
    assert exported.provenance.plan.text == composed
    expected = patched_logits(tiny_gguf, Plan.parse(composed), TOKENS)
    assert np.array_equal(stock_logits(stock_lib_dir, second, TOKENS, 128, tmp_path), expected)


def test_compose() -> None:
    assert export.compose(Plan.parse("5,1-2,4x2,0"), [0, 2, 2, 2, 5, 4]).text == "4,2,2,5x2,0"
    assert export.compose(Plan.parse("0-3"), [3, 2, 1, 0]).text == "3-0"


SHA = "0" * 64


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"plan": "0-3"}, "painters_gguf.source is missing or not a string"),
        ({"plan": 7, "source": "m.gguf", "source_sha256": SHA}, "painters_gguf.plan is missing or not a string"),
        ({"plan": "0-2", "source": "m.gguf", "source_sha256": SHA}, "'0-2' runs 3 blocks and the file has 4"),
        ({"plan": "0,{1,2},3", "source": "m.gguf", "source_sha256": SHA}, "is not a sequential plan"),
        ({"plan": b"0-\xff", "source": "m.gguf", "source_sha256": SHA}, "is not a sequential plan"),
        ({"plan": "0-3", "source": "m.gguf", "source_sha256": "beef"}, "painters_gguf.source_sha256 is not a sha256"),
    ],
)
def test_provenance_that_does_not_hold_is_refused(keys: dict[str, object], message: str, tmp_path: Path) -> None:
    source = write_metadata_only(
        tmp_path / "meta.gguf", {}, values={f"painters_gguf.{key}": value for key, value in keys.items()}
    )
    model = SimpleNamespace(path=source, n_layer=4, sha256=SHA)  # what provenance reads of a Model
    with pytest.raises(PaintersError, match=message):
        export.provenance(gguf.GGUFReader(source), model, Plan.parse("0,1"))


# --- a termination signal midway: no temporary file left, nothing under the final name ---

# a terminal's dispositions, whatever the test runner's (nohup ignores SIGHUP, a background job SIGINT)
AS_IN_A_TERMINAL = """
import signal, sys
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.default_int_handler)
"""
WRITER = (
    AS_IN_A_TERMINAL
    + """
from pathlib import Path
from painters_gguf.outputs import replaced
if sys.argv[2:] == ["SIG_DFL"]:  # a program that left Ctrl-C to the system: replaced's own handler
    signal.signal(signal.SIGINT, signal.SIG_DFL)
with replaced(Path(sys.argv[1])) as part, open(part, "wb") as f:
    for _ in range(64):
        f.write(bytes(1 << 20))
    f.flush()
    sys.stdin.read()  # midway: until the signal
"""
)
# the CLI's export, held after its first tensor
EXPORTER = (
    AS_IN_A_TERMINAL
    + """
import gguf
write = gguf.GGUFWriter.write_tensor_data
def held(self, *args, **kwargs):
    write(self, *args, **kwargs)
    sys.stdin.read()
gguf.GGUFWriter.write_tensor_data = held
from painters_gguf.cli import main
sys.argv = ["painters-gguf", "export", *sys.argv[1:]]
main()
"""
)


def terminated_midway(script: str, args: list[str], out: Path, size: int, signum: int) -> int:
    """Run the script, wait for its temporary file to hold `size` bytes, send the signal: its exit status."""
    process = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not [p for p in out.parent.glob(f".{out.name}.*") if p.stat().st_size >= size]:
            assert process.poll() is None, process.communicate()[1].decode()
            assert time.monotonic() < deadline, "the temporary file never appeared"
            time.sleep(0.01)
        process.send_signal(signum)
        process.wait(timeout=60)
    finally:
        process.kill()
        process.communicate()
    return process.returncode


@pytest.mark.parametrize(
    ("signum", "sigint"), [(signal.SIGTERM, ""), (signal.SIGHUP, ""), (signal.SIGINT, ""), (signal.SIGINT, "SIG_DFL")]
)
def test_a_termination_signal_leaves_no_temporary_file(signum: int, sigint: str, tmp_path: Path) -> None:
    """64 MiB written, the writer waits: the signal ends it as the signal does, after the clean-up
    (Ctrl-C with Python's handler: its KeyboardInterrupt, which ends the process by SIGINT too)."""
    out = tmp_path / "out.bin"
    assert terminated_midway(WRITER, [str(out), sigint], out, 64 << 20, signum) == -signum
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_export_leaves_no_temporary_file(tiny_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported.gguf"
    code = terminated_midway(EXPORTER, ["0-5", "-m", str(tiny_gguf), "-o", str(out)], out, 1, signal.SIGTERM)
    assert code == -signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_replaced_restores_the_handlers(tmp_path: Path) -> None:
    """Set while the block runs (main thread), restored after; an ignored SIGHUP (nohup) stays ignored."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with outputs.replaced(tmp_path / "f") as part:
            assert callable(signal.getsignal(signal.SIGTERM)) and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            part.write_bytes(b"x")
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == (signal.SIG_DFL, signal.SIG_IGN)
        assert (tmp_path / "f").read_bytes() == b"x"
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
