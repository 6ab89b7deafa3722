"""Training on many devices with jax.sharding: a mesh, logical axes, and the rules between them.

The mesh has two axes: `data` (each device sees different sequences, parameters replicated:
data parallel) and `fsdp` (also different sequences, but parameters and optimizer state split
across the devices: fully sharded data parallel). The batch is split over both. No pmap: the
arrays carry their sharding and XLA inserts the collectives (all-reduce of gradients,
all-gathers of FSDP parameters) itself.

Each array dimension gets a logical name from what it measures (`embed`, `vocab`, ...); the
rules say which mesh axis, if any, a logical name is split over. The same rule covers
parameters and the optimizer's moment estimates, which have the parameters' shapes.
"""

import hashlib
import math

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from helpers.errors import UserError
from model import GPTConfig

MESH_AXES = ("data", "fsdp")
BATCH_AXES = MESH_AXES  # every device gets its own slice of the batch
RULES = {"fsdp": {"embed": "fsdp"}}  # logical name -> mesh axis; anything else is replicated


def make_mesh(spec: str) -> Mesh:
    """A mesh from "data:8", "data:2,fsdp:4" or "" (every device on the data axis)."""
    sizes = dict.fromkeys(MESH_AXES, 1)
    if not spec:
        sizes["data"] = jax.device_count()
    for part in filter(None, spec.split(",")):
        name, _, size = part.partition(":")
        if name not in sizes or not size.isdigit() or int(size) < 1:
            raise UserError(f"mesh entry {part!r} is not AXIS:SIZE with AXIS one of {', '.join(MESH_AXES)}")
        sizes[name] = int(size)
    if math.prod(sizes.values()) != jax.device_count():
        raise UserError(
            f"mesh {spec!r} has {math.prod(sizes.values())} devices but there are {jax.device_count()}: "
            f"make the sizes multiply to {jax.device_count()}"
        )
    devices = np.array(jax.devices()).reshape(tuple(sizes.values()))
    return Mesh(devices, MESH_AXES)


def logical_axes(shape: tuple[int, ...], config: GPTConfig) -> tuple[str, ...]:
    """What each dimension of an array measures, recognised by its size."""
    names = {config.n_layer: "layers", config.block_size: "position", config.vocab_size: "vocab",
             config.n_embd: "embed"}  # later entries win when two sizes coincide
    return tuple(names.get(size, "other") for size in shape)


def array_sharding(shape: tuple[int, ...], config: GPTConfig, mesh: Mesh) -> NamedSharding:
    """Where one array lives: its logical axes mapped through the rules of the mesh's axes.

    A mesh axis splits at most one dimension (the first that maps to it)."""
    rules = {}
    for axis in MESH_AXES:
        if mesh.shape[axis] > 1:
            rules |= RULES.get(axis, {})
    spec, used = [], set()
    for size, name in zip(shape, logical_axes(shape, config)):
        axis = rules.get(name)
        if axis is None or axis in used:
            spec.append(None)
            continue
        if size % mesh.shape[axis]:
            raise UserError(
                f"the {name} dimension ({size}) does not divide over the {axis} axis ({mesh.shape[axis]} "
                f"devices): pick n_embd a multiple of {mesh.shape[axis]}, or fewer {axis} devices"
            )
        spec.append(axis)
        used.add(axis)
    return NamedSharding(mesh, P(*spec))


def place(state, config: GPTConfig, mesh: Mesh):
    """The training state (model, optimizer state, keys) on the mesh, each array as the rules
    say. Every process must hold the same values (the same seed or checkpoint)."""
    return jax.tree.map(
        lambda x: jax.device_put(x, array_sharding(x.shape, config, mesh)) if isinstance(x, jax.Array) else x,
        state,
    )


def gather(state):
    """Every array of `state` in full on every process (a collective: all processes call it),
    to write a checkpoint that loads on any number of devices."""
    if jax.process_count() == 1:
        return state  # np.asarray gathers a single process's shards by itself
    from jax.experimental import multihost_utils

    arrays, rest = eqx.partition(state, eqx.is_array)
    return eqx.combine(multihost_utils.process_allgather(arrays, tiled=True), rest)


def parameter_digest(model: eqx.Module) -> str:
    """A sha256 of the model's parameters in full: processes that agree print the same one."""
    params = gather(eqx.filter(model, eqx.is_array))
    return hashlib.sha256(b"".join(np.asarray(p).tobytes() for p in jax.tree.leaves(params))).hexdigest()


def batch_sharding(mesh: Mesh, ndim: int = 3) -> NamedSharding:
    """Batches end in (sequences, tokens), after any leading axes (steps, micro-batches):
    sequences split over every device."""
    return NamedSharding(mesh, P(*[None] * (ndim - 2), BATCH_AXES))


def data_parallel_size(mesh: Mesh) -> int:
    return math.prod(mesh.shape[axis] for axis in BATCH_AXES)


def local_rows(global_rows: int) -> slice:
    """This process's share of a global batch's rows: each process feeds its own devices."""
    per_process = global_rows // jax.process_count()
    start = jax.process_index() * per_process
    return slice(start, start + per_process)
