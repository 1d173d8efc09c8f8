"""patches/blockify.py: the layer loop of a graph as a block run by build_layer_stack, by hand on
small sources; every refusal says why; the generated families are the ones the library covers,
each with a tiny model the oracles check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tiny_oracle_archs import ORACLE_FAMILIES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "patches"))
from blockify import beyond_llama, blockify, generated_patch, graph_owners, listed

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


def test_a_name_declared_by_another_function_of_the_file_is_not_carried() -> None:
    """glm4moe's file has its MTP graph above the main one, declaring the names the main graph's body
    declares again: only the graph's own declarations before its loop can be carried."""
    above = "graph_mtp::graph_mtp() {\n    ggml_tensor * inpSA = nullptr;\n}\n\n"
    assert blockify(above + GRAPH) == above + BLOCK
    carried = GRAPH.replace("    ggml_tensor * inpL;\n", "    ggml_tensor * inpL;\n    ggml_tensor * inpSA;\n")
    carried = carried.replace("        ggml_tensor * inpSA = inpL;", "        inpSA = inpL;")
    with pytest.raises(ValueError, match="carries inpSA"):
        blockify(carried)


def test_every_generated_family_has_a_tiny_model_and_is_covered() -> None:
    from painters_gguf.runtime import plan_architectures

    assert set(listed()) <= set(ORACLE_FAMILIES)
    assert set(listed()) <= set(plan_architectures())


def test_the_readme_shows_the_coverage_table_of_the_library() -> None:
    """README's tables are `blockify.py --table`: the families llama.cpp has, by what becomes of them,
    and what each covered family's block does beyond llama's."""
    from blockify import coverage_table, features_table, sdist_sources
    from build_wheel import cache_root, fetch_sdist

    from painters_gguf.runtime import plan_architectures

    sources = sdist_sources(fetch_sdist(cache_root()))
    table = coverage_table(sources)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert table in readme, "regenerate with: .venv/bin/python patches/blockify.py --table"
    assert features_table(sources) in readme, "regenerate with: .venv/bin/python patches/blockify.py --table"
    covered = [line for line in table.splitlines() if line.startswith("| covered")]
    assert sorted(name.strip("` ") for line in covered for name in line.split("|")[2].split(",")) == sorted(plan_architectures())


HEADER = """\
struct llama_model_granite : public llama_model_base {
    std::unique_ptr<llm_graph_context> build_arch_graph(const llm_graph_params & params) const override;
};

struct llama_model_granite_moe : public llama_model_base {
    using graph = llama_model_granite::graph;
    std::unique_ptr<llm_graph_context> build_arch_graph(const llm_graph_params & params) const override;
};

struct llama_model_granite_moe_v2 : public llama_model_granite_moe {
    llama_model_granite_moe_v2(const struct llama_model_params & params) : llama_model_granite_moe(params) {}
};

struct llama_model_own : public llama_model_granite {
    std::unique_ptr<llm_graph_context> build_arch_graph(const llm_graph_params & params) const override;
};
"""


def test_a_class_that_reuses_another_graph_runs_that_graph() -> None:
    """An alias (`using graph = ...`), a subclass without a graph of its own (through an alias), and
    a subclass with its own graph (not an alias)."""
    assert graph_owners(HEADER) == {
        "llama_model_granite_moe": "llama_model_granite",
        "llama_model_granite_moe_v2": "llama_model_granite",
    }


def test_families_that_share_a_graph_are_found_and_the_hand_edited_one_is_not_generated() -> None:
    """granitemoe and minicpm run granite's generated graph, phimoe phi3's (edited by hand in the
    .patch): the generated patch lists phimoe as covered and leaves phi3.cpp to the .patch."""
    from blockify import families, sdist_sources
    from build_wheel import cache_root, fetch_sdist

    sdist = fetch_sdist(cache_root())
    found = {family.arch: family for family in families(sdist_sources(sdist))}
    assert found["granitemoe"].path.endswith("/granite.cpp") and found["minicpm"].path.endswith("/granite.cpp")
    assert found["phimoe"].path.endswith("/phi3.cpp") and found["phimoe"].graph_of == "llama_model_phi3"
    patch = generated_patch(sdist, ["granite", "granitemoe", "phimoe"]).decode()
    assert patch.count("diff -ruN") == 2 and "models/granite.cpp" in patch and "phi3.cpp" not in patch
    assert "+    LLM_ARCH_GRANITE_MOE," in patch and "+    LLM_ARCH_PHIMOE," in patch


def test_what_a_block_does_beyond_llama_is_read_from_its_code() -> None:
    loader = "void llama_model_x::load_arch_tensors() { layer.attn_q_norm = create_tensor(...); }\n"
    moe = "std::unique_ptr<llm_graph_context> llama_model_x::build_arch_graph() {}\n" + GRAPH.replace(
        "cur = ggml_add(ctx0, cur, inpSA);", "cur = build_moe_ffn(cur, model.layers[il].ffn_up_shexp); // is_swa(il)"
    )
    # the loader's optional Q/K norm does not count, the graph's experts, shared expert and windows do; no RoPE
    assert beyond_llama(loader + moe) == [
        "routed experts (MoE)",
        "a shared expert",
        "sliding-window layers (where the model has them)",
        "no RoPE in the block (ALiBi or learned positions)",
    ]
    roped = GRAPH.replace("cur = build_attn(", "Qcur = ggml_rope_ext(Qcur); cur = build_attn(")
    roped = roped.replace("LLM_NORM_RMS", "LLM_NORM")
    assert beyond_llama(roped) == ["LayerNorm"]
