"""`painters-gguf export`: a sequential plan as a GGUF whose stock llama.cpp logits are the patched
runtime's under the plan, bit for bit; per-layer metadata follows the new order; refusals."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from conftest import catalog_path
from test_archs_tiny import stock_logits
from test_eval_cli import run_cli
from test_runtime_tiny import TOKENS
from tiny_archs import FAMILIES
from tiny_llama import TinyWeights, write_gguf

from painters_gguf import export
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


def write_metadata_only(path: Path, arrays: dict[str, list[int]], n_layer: int = 4) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(n_layer)
    for key, values in arrays.items():
        writer.add_array(f"llama.{key}", values)
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
        {"feed_forward_length": [10, 11, 12, 13], "attention.head_count": [4, 5, 6, 7], "attention.head_count_kv": [1, 2, 1, 2]},
    )
    fields = copied_metadata(source, [3, 0, 0], {0, 2}, tmp_path)
    assert fields["llama.block_count"] == 3
    assert fields["llama.feed_forward_length"] == [13, 10, 10]
    assert fields["llama.attention.head_count"] == [7, 4, 4]
    assert fields["llama.attention.head_count_kv"] == [2, 1, 1]
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
    other_arch = write_gguf(tiny_weights, tmp_path / "tiny-xverse.gguf", arch="xverse")
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
