"""Reading a function's jaxpr, for tests that check what program a transformation builds."""

import jax


def equations(fn, *args, name: str) -> list:
    """The equations of primitive `name` in fn's jaxpr, nested ones (scan bodies, ...) included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == name:
                found.append(eqn)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found
