#!/usr/bin/env python3
"""The per-family half of our llama.cpp patch, generated: a graph's layer loop becomes a block
function that `build_layer_stack` runs in the model's order or as a layer plan says.

    python patches/blockify.py                 # every family: covered, transformable, refused (why), or by hand (why)
    python patches/blockify.py --add ARCH…     # cover these families: checked, then listed in blockified-families.txt
    python patches/blockify.py --patch         # the generated patch, as build_wheel.py appends it to ours

The families in `blockified-families.txt` are not in the .patch file: `build_wheel.py` and
`make_patch.py --init` transform their graphs from the pristine sdist at build time and list them
as covered (`src/llama-layer-plan-archs.inc`), so the patch follows the upstream tree when the pin
moves, and a family whose graph changed shape says why instead of failing to apply. The .patch
holds the rest: the driver, the KV slots and the families edited by hand.

A family is taken when its graph has the standard shape (docs/adding-an-architecture.md): one
`for (int il = 0; il < n_layer; ++il)` loop whose body ends with `inpL = cur;` (earlier writes to
`inpL` in the body are local to the iteration, as the block's parameter is), `inp_out_ids` chosen
before it, attention through the plain or iSWA KV input only, nothing in the body that depends on
the loop counter as a position (`n_layer`), nothing carried from one layer to the next but `inpL`,
no `break`/`continue`. Families with their own state per layer (recurrent, hybrid), KV shared
across layers, MLA or no KV cache are refused by name (`painters_gguf/architectures.py`).
Standard library only (that table is loaded by its path).
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import re
import sys
import tarfile
import types
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_wheel import VERSION, cache_root, fetch_sdist

HERE = Path(__file__).resolve().parent
LISTED = HERE / "blockified-families.txt"
SRC = "vendor/llama.cpp/src"
ARCHS_INC = f"{SRC}/llama-layer-plan-archs.inc"  # the generated families' LLM_ARCH_ values, in the covered list


def _architectures() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("architectures", HERE.parent / "painters_gguf" / "architectures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


refusal = _architectures().refusal
LOOP = "    for (int il = 0; il < n_layer; ++il) {\n"
PARAMETER = "inp_blk"  # the block's input: a name no graph uses
BLOCK = f"    auto block = [&](ggml_tensor * {PARAMETER}, int il, ggml_tensor * out_ids) {{\n"
STACK = "    inpL = build_layer_stack(inpL, inp_out_ids, block);\n"
KV_INPUTS = ("build_attn_inp_kv()", "build_attn_inp_kv_iswa()")


@dataclass(frozen=True)
class Family:
    arch: str  # general.architecture
    enum: str  # LLM_ARCH_…
    path: str  # its graph, vendor/llama.cpp/src/models/<file>.cpp
    graph_of: str | None = None  # the model class whose graph it runs, when not its own (models.h)


def sdist_sources(sdist: Path) -> dict[str, str]:
    """The pristine files blockify reads (the architectures' names, the model mapping, every
    graph), by their paths under llama_cpp_python-<version>/, in one pass over the sdist (a
    compressed tar read member by member would be decompressed again for each)."""
    prefix = f"llama_cpp_python-{VERSION}/"
    wanted = {f"{SRC}/llama-arch.cpp", f"{SRC}/llama-model.cpp", f"{SRC}/models/models.h"}
    found = {}
    with tarfile.open(sdist) as tar:
        for member in tar:
            path = member.name.removeprefix(prefix)
            if path in wanted or (path.startswith(f"{SRC}/models/") and path.endswith(".cpp")):
                file = tar.extractfile(member)
                assert file is not None, path
                found[path] = file.read().decode()
    return found


def families(sources: dict[str, str]) -> list[Family]:
    """Every architecture llama.cpp maps to a model class, with the file of the graph that class runs
    (its own, or the one models.h says it reuses)."""
    names = dict(re.findall(r"\{\s*(LLM_ARCH_\w+),\s*\"([^\"]+)\"\s*\}", sources[f"{SRC}/llama-arch.cpp"]))
    graphs_by_path = {path: text for path, text in sorted(sources.items()) if path.startswith(f"{SRC}/models/")}
    owners = graph_owners(sources[f"{SRC}/models/models.h"])
    found = []
    for cases, model_class in re.findall(
        r"((?:\s*case LLM_ARCH_\w+:)+)\s*return new (llama_model_\w+)\(", sources[f"{SRC}/llama-model.cpp"]
    ):
        owner = owners.get(model_class, model_class)
        constructor = re.compile(re.escape(owner) + r"::graph(?:<\w+>)?::graph\(")
        graphs = [path for path, text in graphs_by_path.items() if constructor.search(text)]
        for enum in re.findall(r"LLM_ARCH_\w+", cases):
            if enum in names and len(graphs) == 1:
                found.append(Family(names[enum], enum, graphs[0], owner if owner != model_class else None))
    return found


def graph_owners(header: str) -> dict[str, str]:
    """Model classes that run another class's graph (`using graph = llama_model_x::graph;`, or a
    subclass without a graph of its own) -> the class whose graph it is."""
    direct = {}
    for model_class, parent, body in re.findall(
        r"^struct (llama_model_\w+) : public (llama_model_\w+) \{\n(.*?)^\};", header, re.S | re.M
    ):
        if alias := re.search(r"using graph = (llama_model_\w+)::graph", body):
            direct[model_class] = alias.group(1)
        elif "build_arch_graph" not in body and parent != "llama_model_base":
            direct[model_class] = parent
    owners = {}
    for model_class, owner in direct.items():
        while owner in direct:  # an alias of an alias
            owner = direct[owner]
        owners[model_class] = owner
    return owners


def hand_covered() -> list[str]:
    """The LLM_ARCH_ values our .patch lists as covered: the families whose graphs it edits by hand."""
    hand_list = (HERE / f"llama-cpp-python-{VERSION}-layer-plan.patch").read_text().split("LLAMA_LAYER_PLAN_ARCHS[]", 1)[1]
    return re.findall(r"LLM_ARCH_\w+", hand_list.split("};", 1)[0])


def listed() -> list[str]:
    """The families whose graphs are generated, as blockified-families.txt lists them."""
    lines = (line.split("#", 1)[0].strip() for line in LISTED.read_text().splitlines())
    return [line for line in lines if line]


def blockify(source: str) -> str:
    """The graph with its layer loop as a block run by build_layer_stack; ValueError says why not."""
    if "build_layer_stack" in source:
        raise ValueError("already runs build_layer_stack")
    if re.search(rf"\b{PARAMETER}\b", source):
        raise ValueError(f"the graph has a name {PARAMETER} of its own, which the block's parameter would hide")
    if "ggml_tensor * inp_out_ids = build_inp_out_ids();" not in source:
        raise ValueError("no inp_out_ids before the loop: the output rows are chosen some other way")
    if source.count(LOOP) != 1:
        raise ValueError(f"{source.count(LOOP)} layer loops of the standard form, not one")
    inputs = set(re.findall(r"build_attn_inp_\w+\([^)]*\)", source))
    if not inputs or not inputs <= set(KV_INPUTS):
        raise ValueError(f"attention input {', '.join(sorted(inputs)) or 'none'}: only the plain or iSWA KV input runs per slot")
    start = source.index(LOOP)
    end = _closing_brace(source, start + len(LOOP) - 2)
    body = source[start + len(LOOP) : end]
    after = source[end + 1 :]
    if not after.startswith("\n"):
        raise ValueError("the loop's closing brace is not on a line of its own")
    body = re.sub(r"\n*        res->t_layer_inp\[il\] = inpL;\n", "\n", body, count=1).lstrip("\n")
    body = body.replace("il == n_layer - 1 && inp_out_ids", "out_ids").replace("inp_out_ids", "out_ids")
    ending = re.search(r"\n(?:        // input for next layer\n)?        inpL = cur;\n    $", "\n" + body)
    if ending is None:
        raise ValueError("the loop body does not end with `inpL = cur;`")
    body = body[: len(body) - (len(ending.group(0)) - 1)]
    for pattern, why in (
        (r"\bn_layer\b", "the body depends on the loop counter as a position (n_layer)"),
        (r"\b(?:break|continue)\s*;", "the body leaves the loop early (break/continue)"),
    ):
        if re.search(pattern, body):
            raise ValueError(why)
    function = source.rfind("\n}", 0, start) + 1  # the graph's own declarations, not those of a function above it
    declared_before = set(re.findall(r"(?:ggml_tensor|auto)\s*\*\s*(\w+)\s*[;=,]", source[function:start]))
    carried = sorted(name for name in declared_before - {"cur", "inpL"} if re.search(rf"\b{name}\s*=[^=]", body))
    if carried:
        raise ValueError(f"the body carries {', '.join(carried)} from one layer to the next")
    body = re.sub(r"\binpL\b", PARAMETER, body)
    return source[:start] + BLOCK + body + "        return cur;\n    };\n" + STACK + after[1:]


def _closing_brace(text: str, opening: int) -> int:
    """The index of the brace that closes the one at `opening` (braces in comments and strings count: none in these loops)."""
    depth = 0
    for i in range(opening, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced braces")


def generated_patch(sdist: Path, archs: list[str]) -> bytes:
    """A unified diff (for `patch -p1`) that transforms the families' graphs from the pristine
    sdist and writes their LLM_ARCH_ values into the covered list; one line of error per family
    that does not transform (SystemExit)."""
    sources = sdist_sources(sdist)
    known = {family.arch: family for family in families(sources)}
    unknown = [arch for arch in archs if arch not in known]
    if unknown:
        sys.exit(f"blockify: llama.cpp {VERSION} has no architecture {', '.join(unknown)} with one graph of its own")
    by_hand = set(hand_covered())
    chunks, enums = [], []
    done = {family.path for family in known.values() if family.enum in by_hand}  # the .patch edits these graphs
    for arch in archs:
        family = known[arch]
        if (reason := refusal(arch)) is not None:
            sys.exit(f"blockify: {arch} is refused: {reason}")
        enums.append(family.enum)
        if family.path in done:  # a graph several families share is transformed once (or edited by hand)
            continue
        done.add(family.path)
        before = sources[family.path]
        try:
            after = blockify(before)
        except ValueError as err:
            sys.exit(f"blockify: {arch} ({Path(family.path).name}): {err}; edit it by hand, or leave it out of {LISTED.name}")
        chunks.append(_diff(family.path, before, after))
    listing = "// generated by patches/blockify.py from blockified-families.txt: the families it covers\n"
    listing += "".join(f"    {enum},\n" for enum in enums)
    chunks.append(_diff(ARCHS_INC, "", listing))
    return "".join(chunks).encode()


def _diff(path: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}")
    return f"diff -ruN a/{path} b/{path}\n" + "".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--add", nargs="+", metavar="ARCH", help="Cover these families (checked, then listed).")
    parser.add_argument("--patch", action="store_true", help="Print the generated patch.")
    parser.add_argument("--table", action="store_true", help="Print the README's two tables.")
    args = parser.parse_args()
    sdist = fetch_sdist(cache_root())
    if args.patch:
        sys.stdout.write(generated_patch(sdist, listed()).decode())
        return
    if args.add:
        archs = sorted(set(listed()) | set(args.add))
        generated_patch(sdist, archs)  # each one transforms, or one line says why not
        LISTED.write_text(LISTED.read_text().split("\n\n", 1)[0] + "\n\n" + "\n".join(archs) + "\n")
        print(f"blockify: {LISTED.name} lists {len(archs)} families; run patches/build_wheel.py")
        return
    if args.table:
        sources = sdist_sources(sdist)
        sys.stdout.write(coverage_table(sources) + "\n" + features_table(sources))
        return
    for family, status in statuses(sdist_sources(sdist)):
        print(f"{family.arch:24} {Path(family.path).name:24} {status}")


def statuses(sources: dict[str, str]) -> list[tuple[Family, str]]:
    """Every family with what becomes of it: covered (by hand, generated), refused (why),
    transformable, or by hand (why the transformation does not take it)."""
    by_hand = hand_covered()
    generated = set(listed())
    found = []
    for family in sorted(families(sources), key=lambda f: f.arch):
        if family.enum in by_hand:
            status = "covered (edited by hand)"
        elif family.arch in generated:
            status = "covered (generated)"
        elif (reason := refusal(family.arch)) is not None:
            status = f"refused: {reason}"
        else:
            try:
                blockify(sources[family.path])
                status = "transformable"
            except ValueError as err:
                status = f"by hand: {err}"
        found.append((family, status))
    return found


# what a covered family's graph does beyond llama's (RMSNorm, RoPE, SwiGLU FFN), as its code shows it
BEYOND_LLAMA = (
    ("routed experts (MoE)", r"build_moe_ffn"),
    ("a shared expert", r"shexp"),
    ("sliding-window layers (where the model has them)", r"build_attn_inp_kv_iswa|is_swa\("),
    ("attention sinks", r"sinks"),
    ("Q/K norms", r"attn_[qk]_norm"),
    ("post-norms (after attention or FFN)", r"post_norm|_post\b"),
    ("LayerNorm", r"LLM_NORM\s*,"),
    ("GELU FFN", r"LLM_FFN_GELU"),
    ("M-RoPE", r"ggml_rope_multi"),
    ("no RoPE in the block (ALiBi or learned positions)", None),
    ("RoPE on some layers only", r"use_rope|no_rope"),
    ("per-layer head counts", r"n_head(?:_kv)?\(il\)"),
    ("residual, attention or logit scales", r"f_residual_scale|f_attention_scale"),
)


def beyond_llama(source: str) -> list[str]:
    """What a family's graph does beyond llama's, from its code (the graph and its helpers: the
    file after the loader)."""
    starts = [i for i in (source.find("::build_arch_graph("), source.find("::graph(")) if i >= 0]
    graph = source[min(starts, default=0) :]
    found = [name for name, pattern in BEYOND_LLAMA if pattern is not None and re.search(pattern, graph)]
    if "rope" not in graph.lower():
        found.append("no RoPE in the block (ALiBi or learned positions)")
    return found


def features_table(sources: dict[str, str]) -> str:
    """The README's second table: each property beyond llama's block, with the covered families that have it."""
    by_feature: dict[str, list[str]] = {name: [] for name, _ in BEYOND_LLAMA}
    for family, status in statuses(sources):
        if status.startswith("covered"):
            for name in beyond_llama(sources[family.path]):
                by_feature[name].append(f"`{family.arch}`")
    rows = [f"| {name} ({len(archs)}) | {', '.join(archs)} |" for name, archs in by_feature.items() if archs]
    return "| beyond llama's block | covered families (`general.architecture`) |\n|---|---|\n" + "\n".join(rows) + "\n"


def coverage_table(sources: dict[str, str]) -> str:
    """The README's table: the families by what becomes of them, with their count."""
    groups: dict[str, list[str]] = {}
    for family, status in statuses(sources):
        kind = status if status.startswith(("covered", "refused")) else "not yet covered (`blockify.py` says why)"
        groups.setdefault(kind, []).append(f"`{family.arch}`")
    order = sorted(groups, key=lambda kind: (not kind.startswith("covered"), kind.startswith("not yet"), kind))
    rows = [f"| {kind} ({len(groups[kind])}) | {', '.join(groups[kind])} |" for kind in order]
    return "| layer plans | families (`general.architecture`) |\n|---|---|\n" + "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
