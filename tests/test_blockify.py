"""patches/blockify.py: the layer loop of a graph as a block run by build_layer_stack, by hand on
small sources; every refusal says why; the generated families are the ones the library covers,
each with a tiny model the oracles check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tiny_oracle_archs import ORACLE_FAMILIES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "patches"))
from blockify import blockify, listed

GRAPH = """\
graph::graph(const llama_model & model, const llm_graph_params & params) : llm_graph_context(params) {
    ggml_tensor * cur;
    ggml_tensor * inpL;

    inpL = build_inp_embd(model.tok_embd);

    auto * inp_attn = build_attn_inp_kv();

    ggml_tensor * inp_out_ids = build_inp_out_ids();

    for (int il = 0; il < n_layer; ++il) {
        res->t_layer_inp[il] = inpL;

        ggml_tensor * inpSA = inpL;
        cur = build_norm(inpL, model.layers[il].attn_norm, NULL, LLM_NORM_RMS, il);
        cur = build_attn(inp_attn, cur, il);
        if (il == n_layer - 1 && inp_out_ids) {
            cur   = ggml_get_rows(ctx0,   cur, inp_out_ids);
            inpSA = ggml_get_rows(ctx0, inpSA, inp_out_ids);
        }
        cur = ggml_add(ctx0, cur, inpSA);

        // input for next layer
        inpL = cur;
    }

    cur = inpL;
}
"""

BLOCK = """\
graph::graph(const llama_model & model, const llm_graph_params & params) : llm_graph_context(params) {
    ggml_tensor * cur;
    ggml_tensor * inpL;

    inpL = build_inp_embd(model.tok_embd);

    auto * inp_attn = build_attn_inp_kv();

    ggml_tensor * inp_out_ids = build_inp_out_ids();

    auto block = [&](ggml_tensor * inp_blk, int il, ggml_tensor * out_ids) {
        ggml_tensor * inpSA = inp_blk;
        cur = build_norm(inp_blk, model.layers[il].attn_norm, NULL, LLM_NORM_RMS, il);
        cur = build_attn(inp_attn, cur, il);
        if (out_ids) {
            cur   = ggml_get_rows(ctx0,   cur, out_ids);
            inpSA = ggml_get_rows(ctx0, inpSA, out_ids);
        }
        cur = ggml_add(ctx0, cur, inpSA);

        return cur;
    };
    inpL = build_layer_stack(inpL, inp_out_ids, block);

    cur = inpL;
}
"""


def test_a_standard_loop_becomes_a_block() -> None:
    assert blockify(GRAPH) == BLOCK


@pytest.mark.parametrize(
    ("edits", "reason"),
    [
        ([("build_attn_inp_kv()", "build_attn_inp_no_cache()")], "attention input build_attn_inp_no_cache()"),
        ([("        cur = ggml_add(", "        if (il == n_layer - 2) { cur = inpSA; }\n        cur = ggml_add(")], "n_layer"),
        ([("        cur = ggml_add(", "        if (il == 2) { continue; }\n        cur = ggml_add(")], "break/continue"),
        (
            [
                ("    ggml_tensor * inpL;\n", "    ggml_tensor * inpL;\n    ggml_tensor * prev = nullptr;\n"),
                ("        inpL = cur;\n    }", "        prev = cur;\n        inpL = cur;\n    }"),
            ],
            "carries prev from one layer to the next",
        ),
        ([("    ggml_tensor * inp_out_ids = build_inp_out_ids();\n", "")], "no inp_out_ids before the loop"),
        (
            [("        // input for next layer\n        inpL = cur;\n", "        inpL = cur;\n        cur = inpSA;\n")],
            "does not end",
        ),
        ([("    cur = inpL;\n}", "    for (int il = 0; il < n_layer; ++il) {\n    }\n    cur = inpL;\n}")], "2 layer loops"),
        ([("    ggml_tensor * cur;\n", "    ggml_tensor * cur;\n    ggml_tensor * inp_blk;\n")], "inp_blk of its own"),
    ],
)
def test_what_is_not_standard_is_refused_with_the_reason(edits: list[tuple[str, str]], reason: str) -> None:
    source = GRAPH
    for old, new in edits:
        assert old in source
        source = source.replace(old, new)
    with pytest.raises(ValueError, match=reason):
        blockify(source)


def test_every_generated_family_has_a_tiny_model_and_is_covered() -> None:
    from painters_gguf.runtime import plan_architectures

    assert set(listed()) <= set(ORACLE_FAMILIES)
    assert set(listed()) <= set(plan_architectures())


def test_the_readme_shows_the_coverage_table_of_the_library() -> None:
    """README's table is `blockify.py --table`: the families llama.cpp has, by what becomes of them."""
    from blockify import coverage_table
    from build_wheel import cache_root, fetch_sdist

    from painters_gguf.runtime import plan_architectures

    table = coverage_table(fetch_sdist(cache_root()))
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert table in readme, "regenerate with: .venv/bin/python patches/blockify.py --table"
    covered = [line for line in table.splitlines() if line.startswith("| covered")]
    assert sorted(name.strip("` ") for line in covered for name in line.split("|")[2].split(",")) == sorted(plan_architectures())
