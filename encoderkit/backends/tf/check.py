"""Is this SavedModel one that encoderkit exported? Checked on the protobuf, before TF loads it.

A SavedModel is a program: ``tf.saved_model.load`` and its signatures run whatever graph it
holds (``WriteFile``, ``PyFunc``, ...). The TF backend therefore loads only a SavedModel whose

- signatures are exactly ``TFMaskedLM.signatures()`` for the spec (names, inputs, outputs,
  dtypes and static dimensions; one per head the model carries);
- variables are exactly the tree the mapping table fills (``storage.mapping.expected_tree(spec)``,
  which ``build_tf_model(spec)`` declares; a test keeps the two equal), by path and shape;
- ops are all pure tensor math (``COMPUTE_OPS``), except the checkpoint saver's own functions
  (reachable only from ``saver_def``), which may read (restore) or write (save) checkpoints;
- object graph holds no assets, resources or other trackables that run code at load.

Anything else raises ``ArtifactError`` naming what differs and the trust flag
(``trust_artifact=True`` / ``--trust-artifact``) that skips this check.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ...core.errors import ArtifactError, MissingDependencyError
from ...core.heads import EVERY, HEADS, MASKS
from ...core.spec import ModelSpec
from ...storage.manifest import read_bounded
from ...storage.mapping import expected_tree
from .layout import SAVED_MODEL_DIR, head_signature

SAVED_MODEL_MAX_BYTES = 256 << 20  # the graph protobuf; weights live in variables/
TRUST_HINT = "pass --trust-artifact (trust_artifact=True) only if you trust who wrote it"

# Pure tensor ops: no file, network, process or Python access. Our exports use a subset of
# these (tests assert it on RoBERTa and BERT); the rest are math the same model may trace to in
# other TensorFlow versions.
COMPUTE_OPS = frozenset("""
Abs Add AddN AddV2 All Any ArgMax ArgMin Assert AssignVariableOp BatchMatMul BatchMatMulV2 BatchMatMulV3
BiasAdd BroadcastArgs BroadcastTo Cast Ceil ConcatV2 Const Cumsum DisableCopyOnRead Einsum Equal Erf Erfc
Exp ExpandDims Fill Floor FloorDiv FloorMod Gather GatherNd GatherV2 Gelu Greater GreaterEqual Identity
IdentityN Less LessEqual Log LogicalAnd LogicalNot LogicalOr MatMul Max Maximum Mean Min Minimum Mod Mul
Neg NoOp NotEqual OnesLike Pack Pad PadV2 PartitionedCall Placeholder Pow Prod Range RealDiv Reciprocal
ReadVariableOp Relu Reshape ResourceGather Rsqrt Select SelectV2 Shape ShapeN Sigmoid Size Slice Softmax
Split SplitV Sqrt Square SquaredDifference Squeeze StatefulPartitionedCall StopGradient StridedSlice Sub
Sum Tanh Tile Transpose Unpack VarHandleOp ZerosLike _Arg _Retval
""".split())
# Used by the checkpoint restore function (reads the SavedModel's own variables/ by a fed prefix).
RESTORE_OPS = frozenset({"RestoreV2", "ShardedFilename", "StaticRegexFullMatch", "StringJoin"})
# Write checkpoints: allowed only in functions reachable from the saver's save op and nowhere else.
SAVE_OPS = frozenset({"SaveV2", "MergeV2Checkpoints"})
OBJECT_KINDS = frozenset({"user_object", "variable", "function", "bare_concrete_function"})


def expected_signatures(spec: ModelSpec) -> dict[str, tuple[dict, dict]]:
    """signature -> ({input: (dtype, dims)}, {output: (dtype, dims)}); -1 is a dynamic dim."""
    i64, f32 = 9, 1  # DT_INT64, DT_FLOAT
    ids = {"input_ids": (i64, (-1, -1)), "attention_mask": (i64, (-1, -1))}
    if spec.architecture.segment_types:  # BERT's signatures take the pair's token types too
        ids["token_type_ids"] = (i64, (-1, -1))
    h, n = spec.hidden_size, spec.num_layers
    sigs = {"serving_default": (ids, {"last_hidden_state": (f32, (-1, -1, h))}),
            "hidden_states": (ids, {"hidden_states": (f32, (n + 1, -1, -1, h))}),
            "attentions": (ids, {"attentions": (f32, (n, -1, spec.num_heads, -1, -1))})}
    for head in spec.heads:
        rows, out = HEADS[head].rows, spec.head_out(head)
        extra = {"mask_positions": (i64, (-1, 2))} if rows == MASKS else {}
        sigs[head_signature(head)] = (ids | extra, {"logits": (f32, (-1, -1, out) if rows == EVERY else (-1, out))})
    return sigs


def _refuse(path: Path, what: str) -> ArtifactError:
    return ArtifactError(f"{path}: not a SavedModel encoderkit exported ({what}); refusing to run it; "
                         f"re-run `encoderkit convert --to tf`, or {TRUST_HINT}")


def _tensors(d) -> dict:
    return {k: (int(t.dtype), tuple(int(x.size) for x in t.tensor_shape.dim)) for k, t in d.items()}


def _callees(nodes: Iterable) -> set[str]:
    out = set()
    for n in nodes:
        for v in n.attr.values():
            if v.HasField("func"):
                out.add(v.func.name)
            if v.HasField("list"):
                out |= {f.name for f in v.list.func}
    return out


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def check_saved_model(directory: Path, spec: ModelSpec) -> None:
    """Refuse a SavedModel under ``directory`` that this package did not export for ``spec``.

    Args:
        directory: the ``tf`` format directory (holds ``saved_model/1``).
    Raises:
        ArtifactError: unreadable, or signatures / variables / ops / objects differ.
    """
    pb = Path(directory) / SAVED_MODEL_DIR / "saved_model.pb"
    mg = _meta_graph(pb)
    _check_signatures(pb, mg, spec)
    _check_variables(pb, mg, spec)
    _check_ops(pb, mg)


def _meta_graph(pb: Path):
    """The one meta graph of ``saved_model.pb``, read within a size bound, with no assets."""
    from google.protobuf.message import DecodeError

    try:
        from tensorflow.core.protobuf import saved_model_pb2
    except ModuleNotFoundError:  # pragma: no cover - the tf backend needs TF anyway
        raise MissingDependencyError("backend 'tf' needs tensorflow; pip install 'encoderkit[tf]'") from None
    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString(read_bounded(pb, SAVED_MODEL_MAX_BYTES, what="saved_model.pb"))
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ArtifactError(f"{pb}: not a SavedModel protobuf ({type(e).__name__})") from None
    if len(sm.meta_graphs) != 1:
        raise _refuse(pb, f"{len(sm.meta_graphs)} meta graphs, expected 1")
    mg = sm.meta_graphs[0]
    if mg.asset_file_def:
        raise _refuse(pb, "it carries asset files")
    return mg


def _check_signatures(pb: Path, mg, spec: ModelSpec) -> None:
    want = expected_signatures(spec)
    got = {k: (_tensors(s.inputs), _tensors(s.outputs)) for k, s in mg.signature_def.items()
           if k != "__saved_model_init_op"}
    if set(got) != set(want):
        raise _refuse(pb, f"signatures {sorted(got)}, expected {sorted(want)}")
    for k, (ins, outs) in want.items():
        if got[k] != (ins, outs):
            raise _refuse(pb, f"signature {k!r} has inputs/outputs {got[k]}, expected {(ins, outs)}")


def _check_variables(pb: Path, mg, spec: ModelSpec) -> None:
    """Objects and variables: paths from the root through public attributes (tf.Module's own
    ``_``-prefixed aliases are the same objects) must be exactly the mapping tree."""
    nodes = mg.object_graph_def.nodes
    kinds = {n.WhichOneof("kind") for n in nodes}
    if not kinds <= OBJECT_KINDS:
        raise _refuse(pb, f"object kinds {sorted(kinds - OBJECT_KINDS)}")
    expected = expected_tree(spec)
    found: dict[str, tuple[int, ...]] = {}
    seen_vars: set[int] = set()
    stack = [(0, "")]
    visited: set[tuple[int, str]] = set()
    while stack:
        i, prefix = stack.pop()
        if (i, prefix) in visited or len(visited) > 100 * (len(nodes) + 1):
            continue
        visited.add((i, prefix))
        node = nodes[i]
        if node.WhichOneof("kind") == "variable":
            found[prefix.rstrip("/")] = tuple(int(d.size) for d in node.variable.shape.dim)
            seen_vars.add(i)
            if node.variable.dtype != 1:
                raise _refuse(pb, f"variable {prefix.rstrip('/')} is not float32")
            continue
        for c in node.children:
            if c.local_name.startswith("_") or c.local_name == "signatures" or not 0 <= c.node_id < len(nodes):
                continue
            stack.append((c.node_id, f"{prefix}{c.local_name}/"))
    all_vars = {i for i, n in enumerate(nodes) if n.WhichOneof("kind") == "variable"}
    if all_vars - seen_vars:
        raise _refuse(pb, f"{len(all_vars - seen_vars)} variables outside the model's parameter tree")
    if found != expected:
        diff = sorted(set(found) ^ set(expected)) or sorted(k for k in found if found[k] != expected[k])
        raise _refuse(pb, f"variables differ from the model's parameter tree (first: {diff[0]})")


def _check_ops(pb: Path, mg) -> None:
    """Every function reachable from anything but the saver's save op is pure math."""
    library = {f.signature.name: f for f in mg.graph_def.library.function}
    graph = {n.name: n for n in mg.graph_def.node}

    def reach(roots: set[str]) -> set[str]:
        todo, done = list(roots), set()
        while todo:
            name = todo.pop()
            if name in done or name not in library:
                continue
            done.add(name)
            todo += _callees(library[name].node_def)
        return done

    saver = mg.saver_def if mg.HasField("saver_def") else None
    special = {}  # graph node -> the extra ops its own functions may use
    if saver is not None:
        special[_node_name(saver.save_tensor_name)] = SAVE_OPS | RESTORE_OPS
        special[_node_name(saver.restore_op_name)] = RESTORE_OPS
    nodes = mg.object_graph_def.nodes
    object_fns = {n.bare_concrete_function.concrete_function_name for n in nodes
                  if n.WhichOneof("kind") == "bare_concrete_function"}
    object_fns |= {f for n in nodes if n.WhichOneof("kind") == "function" for f in n.function.concrete_functions}
    # everything the signatures, the loaded objects or any other graph node can call: pure math only
    others = reach(_callees(n for name, n in graph.items() if name not in special) | object_fns)
    extra: dict[str, frozenset] = {}
    for node, ops in special.items():
        for name in reach(_callees([graph[node]]) if node in graph else set()) - others:
            extra[name] = extra.get(name, frozenset()) | ops
    for name, fn in library.items():
        bad = sorted({n.op for n in fn.node_def} - COMPUTE_OPS - extra.get(name, frozenset()) - set(library))
        if bad:
            raise _refuse(pb, f"function {name} runs ops {bad}")
    bad = sorted({n.op for n in graph.values()} - COMPUTE_OPS - set(library))
    if bad:
        raise _refuse(pb, f"graph runs ops {bad}")
