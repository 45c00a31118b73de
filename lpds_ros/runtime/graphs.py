"""Small ONNX graph utilities shared by the exporter and the runtime (no torch here).

``fuse_steered`` builds, in memory, the one graph the steered control path runs:
(obs, eps) -> action = decoder(obs, eps + steering(obs)).  The two shipped files stay separate (each
with its own hash in the manifest); fusing them at load time saves a session call, a copy of Delta and
an input binding per decision.
"""
from __future__ import annotations

import onnx
from onnx import helper

from lpds_ros.runtime.manifest import ACTION, DELTA, LATENT, NOISE, OBS


def io_shapes(model: onnx.ModelProto) -> tuple[dict[str, list], dict[str, list]]:
    """{name: shape} of the graph's inputs and outputs; a symbolic dimension is its name, unknown is None."""
    def shapes(values) -> dict[str, list]:
        out = {}
        for v in values:
            dims = []
            for d in v.type.tensor_type.shape.dim:
                dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
            out[v.name] = dims
        return out

    initializers = {i.name for i in model.graph.initializer}
    return shapes([v for v in model.graph.input if v.name not in initializers]), shapes(model.graph.output)


def io_elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """{name: ONNX element type} of the graph's inputs and outputs."""
    return {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    existing = metadata(model)
    existing.update(values)
    del model.metadata_props[:]
    for key in sorted(existing):
        model.metadata_props.add(key=key, value=existing[key])


def _rename(graph: onnx.GraphProto, prefix: str, keep: dict[str, str]) -> None:
    """Prefix every tensor and node name of ``graph`` in place, except those in ``keep`` (old -> new)."""
    def new(name: str) -> str:
        return "" if not name else keep.get(name, prefix + name)

    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(f"cannot fuse a graph with control flow (node {node.name!r}, {node.op_type})")
        node.input[:] = [new(n) for n in node.input]
        node.output[:] = [new(n) for n in node.output]
        node.name = prefix + node.name
    for init in graph.initializer:
        init.name = new(init.name)
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        value.name = new(value.name)


def fuse_steered(decoder: onnx.ModelProto, steering: onnx.ModelProto) -> onnx.ModelProto:
    """One graph (obs, eps) -> action computing decoder(obs, eps + steering(obs)).

    The inputs are copied, never modified.  Both graphs must use the default-domain opsets the exporter
    writes; the fused model keeps the higher opset of each domain.
    """
    dec, steer = onnx.ModelProto(), onnx.ModelProto()
    dec.CopyFrom(decoder)
    steer.CopyFrom(steering)
    _rename(steer.graph, "steering/", {OBS: OBS, DELTA: "steering/" + DELTA})
    _rename(dec.graph, "decoder/", {OBS: OBS, LATENT: "w", ACTION: ACTION})
    obs_in = next(v for v in dec.graph.input if v.name == OBS)
    latent_in = next(v for v in dec.graph.input if v.name == "w")
    eps_in = onnx.ValueInfoProto()
    eps_in.CopyFrom(latent_in)
    eps_in.name = NOISE
    add = helper.make_node("Add", [NOISE, "steering/" + DELTA], ["w"], name="steered_latent")
    graph = helper.make_graph(
        list(steer.graph.node) + [add] + list(dec.graph.node),
        "lpds_steered_decoder",
        [obs_in, eps_in],
        list(dec.graph.output),
        initializer=list(steer.graph.initializer) + list(dec.graph.initializer),
        value_info=list(steer.graph.value_info) + list(dec.graph.value_info),
    )
    opsets: dict[str, int] = {}
    for imp in list(dec.opset_import) + list(steer.opset_import):
        opsets[imp.domain] = max(opsets.get(imp.domain, 0), imp.version)
    fused = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
                              producer_name="lpds_ros.runtime")
    fused.ir_version = max(dec.ir_version, steer.ir_version)
    set_metadata(fused, metadata(decoder))
    return fused
