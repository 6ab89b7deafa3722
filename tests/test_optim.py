import jax
import numpy as np
import pytest

from helpers.optim import decay_mask, lr_schedule
from model import GPT, GPTConfig


def test_schedule_warms_up_from_nonzero_then_decays_to_min_lr():
    schedule = lr_schedule(1e-3, warmup_iters=10, lr_decay_iters=100, min_lr=1e-4, decay_lr=True)
    assert np.isclose(schedule(0), 1e-3 / 11)
    assert np.isclose(schedule(10), 1e-3)
    assert np.isclose(schedule(55), 1e-4 + 0.5 * (1e-3 - 1e-4))
    assert np.isclose(schedule(100), 1e-4) and np.isclose(schedule(500), 1e-4)
    assert np.isclose(lr_schedule(1e-3, 10, 100, 1e-4, decay_lr=False)(0), 1e-3)


def test_weight_decay_only_on_matrices():
    model = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=16, bias=True),
                key=jax.random.key(0))
    mask = decay_mask(model)
    assert mask.wte.weight and mask.wpe.weight and mask.h.attn.c_attn.weight and mask.h.mlp.c_proj.weight
    assert not mask.h.ln_1.weight and not mask.h.attn.c_attn.bias and not mask.ln_f.weight


def test_skip_nonfinite_leaves_parameters_alone_on_a_nan_gradient():
    import jax.numpy as jnp

    from helpers.optim import optimizer_from_settings

    settings = dict(learning_rate=0.1, warmup_iters=0, lr_decay_iters=10, min_lr=0.01, decay_lr=False,
                    weight_decay=0.0, beta1=0.9, beta2=0.99, grad_clip=1.0, skip_nonfinite=True)
    optimizer, _ = optimizer_from_settings(settings)
    params = {"w": jnp.ones(3)}
    state = optimizer.init(params)
    updates, state = optimizer.update({"w": jnp.array([1.0, jnp.nan, 0.0])}, state, params)
    np.testing.assert_array_equal(updates["w"], 0.0)
    updates, state = optimizer.update({"w": jnp.ones(3)}, state, params)
    assert np.all(np.asarray(updates["w"]) < 0)  # a finite gradient updates as usual


def test_the_optimizer_decays_the_matrices_only_and_clips():
    import equinox as eqx
    import jax.numpy as jnp
    import optax

    from helpers.optim import make_optimizer

    model = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=16, bias=True), key=jax.random.key(0))
    params = eqx.filter(model, eqx.is_array)
    params = jax.tree.map(lambda p: p + 0.5, params)  # nonzero biases, so a decay would show
    optimizer = make_optimizer(optax.constant_schedule(0.1), weight_decay=0.5, beta1=0.9, beta2=0.99, grad_clip=1.0)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(optimizer.update)(zeros, optimizer.init(params), params)
    # With zero gradients only weight decay moves anything: the matrices, never biases or gains.
    assert float(jnp.abs(updates.h.attn.c_attn.weight).min()) > 0 and float(jnp.abs(updates.wte.weight).min()) > 0
    for leaf in (updates.h.attn.c_attn.bias, updates.h.ln_1.weight, updates.h.ln_1.bias, updates.ln_f.weight):
        assert float(jnp.abs(leaf).max()) == 0.0
    # Clipping: Adam's first step does not depend on the gradient's scale, its second does,
    # unless both gradients were clipped to the same norm first.
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(1), p.shape), params)
    second_steps = []
    for clip in (1.0, 0.0):
        optimizer = make_optimizer(optax.constant_schedule(0.1), 0.0, 0.9, 0.99, grad_clip=clip)
        update = jax.jit(optimizer.update)
        _, state = update(jax.tree.map(lambda g: 10 * g, grads), optimizer.init(params), params)
        second_steps.append(update(jax.tree.map(lambda g: 0.01 * g, grads), state, params)[0])
    clipped, unclipped = (np.asarray(step.wte.weight) for step in second_steps)
    assert not np.allclose(clipped, unclipped, rtol=1e-3)


@pytest.mark.parametrize("layers", [(), ("attention", "conv")], ids=["stacked", "mixed"])
def test_muon_takes_the_blocks_matrices_and_adamw_the_rest(layers):
    import equinox as eqx
    import jax.numpy as jnp

    from helpers.optim import LINEAR_MATRIX, muon_dimensions, optimizer_from_settings

    config = GPTConfig(block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=16, bias=True, tie_head=False,
                       layers=layers)
    params = eqx.filter(GPT(config, key=jax.random.key(0)), eqx.is_array)
    dims = muon_dimensions(params)
    muon = {jax.tree_util.keystr(path) for path, leaf in jax.tree_util.tree_leaves_with_path(
        dims, is_leaf=lambda x: x is None or x == LINEAR_MATRIX) if leaf == LINEAR_MATRIX}
    blocks = [".h"] if not layers else [".h[0]", ".h[1]"]
    expected = {f"{b}.{name}.weight" for b in blocks for name in ("mlp.c_fc", "mlp.c_proj", "attn.c_attn", "attn.c_proj")}
    if layers:  # the conv layer's projection is a Linear too; its kernel is not a matrix
        expected = {p for p in expected if not p.startswith(".h[1].attn.c_attn")}
    assert muon == expected
    # Every other leaf (embeddings, head, gains, biases, the conv kernel) goes to AdamW.
    n_leaves = len(jax.tree.leaves(params))
    assert n_leaves > len(muon) + 5
    # One update: Muon's updates of a stacked matrix are orthogonal per layer (equal singular values).
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(1), p.shape), params)

    def spreads(ns_steps, coefficients="quintic"):  # largest over smallest singular value of each layer's c_fc update
        # Built from train.py's settings, as a run builds it.
        optimizer, _ = optimizer_from_settings(dict(
            optimizer="muon", learning_rate=1e-3, muon_learning_rate=0.02, muon_ns_steps=ns_steps,
            muon_coefficients=coefficients, warmup_iters=0,
            lr_decay_iters=10, min_lr=1e-3, decay_lr=False, weight_decay=0.0, beta1=0.9, beta2=0.95, grad_clip=0.0))
        updates, _ = jax.jit(optimizer.update)(grads, optimizer.init(params), params)
        c_fc = updates.h.mlp.c_fc.weight if not layers else updates.h[0].mlp.c_fc.weight[None]
        singular = [jnp.linalg.svd(matrix, compute_uv=False) for matrix in c_fc]
        return [float(s.max() / s.min()) for s in singular]

    five = spreads(5)
    assert max(five) < 2  # Newton-Schulz: roughly equal (a gradient's: about 3)
    # muon_ns_steps reaches optax: a single Newton-Schulz step leaves the updates further from orthogonal.
    assert min(spreads(1)) > max(five) + 0.2
    # Polar Express's five polynomials end nearer orthogonal than the quintic's five (about 1.3 against 1.65).
    assert max(spreads(5, "polar_express")) < min(five) - 0.2


def test_polar_express_takes_its_safety_factor_into_the_first_polynomial():
    import numpy as np

    from helpers.optim import POLAR_EXPRESS, POLAR_EXPRESS_SAFETY, newton_schulz_coefficients

    coefficients = newton_schulz_coefficients("polar_express", 3)
    assert coefficients[1:] == POLAR_EXPRESS[1:3]  # the first three iterations'
    # Normalised to 1 by optax and put through the first polynomial, a singular value comes out
    # as it would normalised to POLAR_EXPRESS_SAFETY and put through the published one.
    x = np.linspace(0.0, 1.0, 11)
    quintic = lambda x, a, b, c: a * x + b * x**3 + c * x**5  # noqa: E731
    np.testing.assert_allclose(quintic(x, *coefficients[0]), quintic(x / POLAR_EXPRESS_SAFETY, *POLAR_EXPRESS[0]),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="set muon_ns_steps to at most 5"):
        newton_schulz_coefficients("polar_express", 6)


def test_the_matrices_of_any_model_are_found():
    import equinox as eqx

    from helpers.optim import describe_groups, hidden_matrices, parameter_groups, weight_matrices

    class Dense(eqx.Module):
        """A layer of one's own, built like a Linear: its matrix is called weight."""

        weight: jax.Array

    class FromScratch(eqx.Module):
        embed: eqx.nn.Embedding
        layers: list
        norm: eqx.nn.LayerNorm
        out: eqx.nn.Linear

    key = jax.random.key(0)
    model = FromScratch(eqx.nn.Embedding(10, 8, key=key), [eqx.nn.Linear(8, 8, key=key), Dense(jax.numpy.ones((8, 8)))],
                        eqx.nn.LayerNorm(8), eqx.nn.Linear(8, 10, key=key))
    ids = lambda arrays: {id(a) for a in arrays}  # noqa: E731
    assert ids(weight_matrices(model)) == ids([model.embed.weight, model.layers[0].weight, model.layers[1].weight,
                                               model.out.weight])
    # Muon: not the embedding, not the output layer the model holds itself.
    assert ids(hidden_matrices(model)) == ids([model.layers[0].weight, model.layers[1].weight])
    assert describe_groups(parameter_groups(model, "muon")).startswith("muon (hidden matrices): 2 arrays, 128 parameters")

    class Says(FromScratch):
        def hidden_matrices(self):  # a model may say which arrays are matrices
            return [self.layers[1].weight]

    says = Says(*(getattr(model, name) for name in ("embed", "layers", "norm", "out")))
    assert ids(hidden_matrices(says)) == ids([says.layers[1].weight])


def test_stacked_norms_are_not_matrices():
    from helpers.optim import weight_matrices

    model = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=16, norm="rmsnorm"),
                key=jax.random.key(0))
    assert model.h.ln_1.weight.ndim == 2  # stacked: one row per layer
    assert all(matrix is not model.h.ln_1.weight for matrix in weight_matrices(model))
    assert len(weight_matrices(model)) == 2 + 4  # wte, wpe, and the blocks' four Linears


@pytest.mark.parametrize("layers", [(), ("test-gained", "attention")], ids=["stacked", "mixed"])
def test_a_components_own_gain_is_no_matrix_stacked_or_not(layers):
    # Stacking adds a layer axis: a (C,) gain becomes (L, C), and must still not be decayed.
    import equinox as eqx

    from helpers.optim import hidden_matrices, weight_matrices
    from model import MIXERS, Linear

    class Gain(eqx.Module):
        weight: jax.Array

    @MIXERS.register("test-gained")
    class Gained(eqx.Module):
        gain: Gain
        c_proj: Linear

        def __init__(self, config, spec):
            self.gain, self.c_proj = Gain(jax.numpy.ones(config.n_embd)), Linear(config.n_embd, config.n_embd, False)

        def __call__(self, x, *, key=None):
            return self.c_proj(x * self.gain.weight)

    config = GPTConfig(block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=16, mixer="test-gained", layers=layers)
    model = GPT(config, key=jax.random.key(0))
    gains = [block.attn.gain.weight for block in ([model.h] if model.stacked else model.h) if hasattr(block.attn, "gain")]
    for arrays in (weight_matrices(model), hidden_matrices(model)):
        assert not any(array is gain for array in arrays for gain in gains)
    assert len(weight_matrices(model)) == (2 + 3 if not layers else 2 + 3 + 4)  # wte, wpe; each layer's Linears


def test_a_state_for_other_optimizer_settings_keeps_what_fits_and_continues_the_schedule():
    import equinox as eqx
    import optax

    from helpers.optim import carried_over, optimizer_from_settings

    settings = dict(learning_rate=1e-3, warmup_iters=2, lr_decay_iters=20, min_lr=1e-4, decay_lr=True,
                    weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, muon_learning_rate=0.02)
    model = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=16), key=jax.random.key(0))
    params = eqx.filter(model, eqx.is_array)
    adamw, _ = optimizer_from_settings(settings)
    state = adamw.init(params)
    for _ in range(3):
        _, state = adamw.update(params, state, params)  # the parameters as gradients: any will do
    adam = [s for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)][0]

    # Skipping or clipping turned on or off: Adam's moments and counts all carry over, exactly.
    for change in (dict(skip_nonfinite=True), dict(grad_clip=0.0)):
        optimizer, _ = optimizer_from_settings(settings | change)
        fresh = optimizer.init(params)
        converted, carried, step = carried_over(state, fresh, iter_num=3)
        assert jax.tree.structure(converted) == jax.tree.structure(fresh)
        assert carried == len(jax.tree.leaves(state)) and step == 3
        kept = [s for s in jax.tree.leaves(converted, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
                if isinstance(s, optax.ScaleByAdamState)][0]
        for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(adam)):
            np.testing.assert_array_equal(a, b)

    # Another optimizer: its own state, fresh, except that each schedule goes on where the saved
    # one stood: 3 updates, at iteration 5 had skip_nonfinite skipped two.
    muon, _ = optimizer_from_settings(settings | {"optimizer": "muon"})
    converted, carried, step = carried_over(state, muon.init(params), iter_num=5)
    schedules = [s for s in jax.tree.leaves(converted, is_leaf=lambda s: isinstance(s, optax.ScaleByScheduleState))
                 if isinstance(s, optax.ScaleByScheduleState)]
    assert step == 3 and len(schedules) == 2 and all(int(s.count) == 3 for s in schedules)
    assert carried < len(jax.tree.leaves(converted))
    muon.update(params, converted, params)  # a state this optimizer can use


def test_a_state_for_other_newton_schulz_coefficients_holds_each_saved_array_once():
    import equinox as eqx

    from helpers.optim import carried_over, optimizer_from_settings, same_layout

    settings = dict(learning_rate=1e-3, warmup_iters=2, lr_decay_iters=20, min_lr=1e-4, decay_lr=True,
                    weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, muon_learning_rate=0.02, optimizer="muon")
    model = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=16), key=jax.random.key(0))
    params = eqx.filter(model, eqx.is_array)
    quintic, _ = optimizer_from_settings(settings)
    polar, _ = optimizer_from_settings(settings | dict(muon_coefficients="polar_express", muon_ns_steps=3))
    # Read back from a file, a state's dicts come in sorted order (the AdamW side before Muon's),
    # unlike a fresh one's; each side has a schedule whose state is alike.
    saved = jax.tree.map(lambda x: x, quintic.init(params))
    fresh = polar.init(params)
    assert not same_layout(saved, fresh)  # Muon's coefficients: one row against one per step
    converted, carried, _ = carried_over(saved, fresh, iter_num=3)
    leaves = jax.tree.leaves(converted)
    assert same_layout(converted, fresh)
    assert len({id(leaf) for leaf in leaves}) == len(leaves)  # no saved array in two places
    assert 0 < carried == len({id(leaf) for leaf in jax.tree.leaves(saved)} & {id(leaf) for leaf in leaves})
