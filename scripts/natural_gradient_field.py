"""Vanilla vs natural policy-gradient fields on the Peters & Schaal (2008) LQR example.

The problem is one-dimensional and linear-quadratic:

    s_0 = 0 (or s_0 ~ N(0, s0_var)),  a_t ~ N(k s_t, sigma^2),  s_{t+1} = s_t + a_t,
    r(s, a) = -s^2 - a^2,  J(k, sigma) = E[sum_{t<T} r(s_t, a_t)],  T = 10, no discount.

Under a linear-Gaussian policy the state stays Gaussian with zero mean, so only
its second moment m_t = E[s_t^2] matters, and it obeys the exact linear recursion
m_{t+1} = (1 + k)^2 m_t + sigma^2. Hence J, its gradient (``jax.grad`` of the
recursion) and the Fisher information of the trajectory distribution,

    F = E[grad log p(tau) grad log p(tau)^T] = sum_t diag(m_t / sigma^2, 2 / sigma^2),

are all exact — no sampling anywhere in the figure.

The start state is fixed at 0 by default so that all state variance is injected
by exploration, the regime in which the effect shows at every sigma. Then
J = -sigma^2 H(k): the sigma-gradient shrinks like sigma but the k-gradient like
sigma^2, so the vanilla gradient points ever more straight down (to sigma = 0,
where learning of k stops) as exploration shrinks, while the natural gradient
turns toward the best gain k*. With a random start (``--s0-var 1``) part of the
cost does not scale with sigma and at small sigma the vanilla gradient turns
toward k* as well; the effect is then confined to larger sigma.

    python scripts/natural_gradient_field.py
    python scripts/natural_gradient_field.py --out field.png --horizon 20 --s0-var 1
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

HORIZON = 10
S0_VAR = 0.0
DEFAULT_OUT = Path("docs/natural_gradient_field.png")
K_RANGE = (-1.8, 0.2)
SIGMA_RANGE = (0.05, 1.0)


def state_second_moments(k, sigma, horizon: int = HORIZON, s0_var: float = S0_VAR) -> jax.Array:
    """E[s_t^2] for t < horizon: the only statistic of the (zero-mean Gaussian) state J depends on."""
    growth = (1.0 + k) ** 2
    moments = [jnp.asarray(s0_var, jnp.result_type(float))]
    for _ in range(horizon - 1):
        moments.append(growth * moments[-1] + sigma**2)
    return jnp.stack(moments)


def expected_return(k, sigma, horizon: int = HORIZON, s0_var: float = S0_VAR) -> jax.Array:
    """Exact J(k, sigma): E[s_t^2 + a_t^2] = (1 + k^2) m_t + sigma^2 at every step."""
    moments = state_second_moments(k, sigma, horizon, s0_var)
    return -jnp.sum((1.0 + k**2) * moments + sigma**2)


def vanilla_gradient(k, sigma, horizon: int = HORIZON, s0_var: float = S0_VAR) -> jax.Array:
    """(dJ/dk, dJ/dsigma), differentiated through the exact recursion."""
    dk, dsigma = jax.grad(expected_return, argnums=(0, 1))(k, sigma, horizon, s0_var)
    return jnp.stack([dk, dsigma])


def fisher(k, sigma, horizon: int = HORIZON, s0_var: float = S0_VAR) -> jax.Array:
    """Fisher information of the trajectory distribution in (k, sigma).

    Per step the k-score is (a - k s) s / sigma^2 and the sigma-score
    ((a - k s)^2 - sigma^2) / sigma^3; their second moments given s are
    s^2 / sigma^2 and 2 / sigma^2, the cross moment is an odd noise moment (0),
    and scores of different steps are uncorrelated (each has zero mean given
    the past), so the trajectory Fisher is the sum of the per-step ones.
    """
    moments = state_second_moments(k, sigma, horizon, s0_var)
    return jnp.diag(jnp.stack([jnp.sum(moments), 2.0 * horizon]) / sigma**2)


def natural_gradient(k, sigma, horizon: int = HORIZON, s0_var: float = S0_VAR) -> jax.Array:
    """F^-1 grad J: the steepest-ascent direction when step size is measured in KL, not in (k, sigma)."""
    return jnp.linalg.solve(fisher(k, sigma, horizon, s0_var), vanilla_gradient(k, sigma, horizon, s0_var))


def optimal_gain(sigma, horizon: int = HORIZON, s0_var: float = S0_VAR) -> float:
    """argmax_k J(k, sigma): a dense grid over [-2, 0] (where the closed loop is stable), then Newton.

    With a fixed zero start J = -sigma^2 H(k), so the best gain is the same for every sigma.
    """
    return float(_optimal_gains(jnp.atleast_1d(jnp.asarray(sigma, jnp.float32)), s0_var, horizon)[0])


@functools.partial(jax.jit, static_argnums=2)
def _optimal_gains(sigmas, s0_var, horizon):
    """Best gain for each sigma, compiled once: the figure needs one per contour row."""
    grid = jnp.linspace(-2.0, 0.0, 2001)
    d1 = jax.grad(expected_return)
    d2 = jax.grad(d1)

    def best(sigma):
        values = jax.vmap(lambda k: expected_return(k, sigma, horizon, s0_var))(grid)
        start = grid[jnp.argmax(values)]
        return jax.lax.fori_loop(
            0, 5, lambda _, k: k - d1(k, sigma, horizon, s0_var) / d2(k, sigma, horizon, s0_var), start)

    return jax.vmap(best)(sigmas)


def gradient_fields(ks: np.ndarray, sigmas: np.ndarray, horizon: int = HORIZON, s0_var: float = S0_VAR):
    """J, vanilla and natural gradients on the (sigma, k) mesh; gradients have shape (len(sigmas), len(ks), 2)."""
    kk, ss = np.meshgrid(ks, sigmas)
    values, vanilla, natural = _fields(jnp.asarray(kk.ravel(), jnp.float32), jnp.asarray(ss.ravel(), jnp.float32),
                                       s0_var, horizon)
    return (np.asarray(values).reshape(kk.shape), np.asarray(vanilla).reshape(*kk.shape, 2),
            np.asarray(natural).reshape(*kk.shape, 2))


@functools.partial(jax.jit, static_argnums=3)
def _fields(ks, sigmas, s0_var, horizon):
    """All three quantities at every mesh point in one compiled, vectorised call."""
    def at(fn):
        return jax.vmap(lambda k, s: fn(k, s, horizon, s0_var))(ks, sigmas)

    return at(expected_return), at(vanilla_gradient), at(natural_gradient)


def plot(out: Path, horizon: int = HORIZON, s0_var: float = S0_VAR, arrows: int = 17) -> None:
    """Both fields side by side over J contours, arrows normalised to show direction only (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fine_k, fine_s = np.linspace(*K_RANGE, 200), np.linspace(0.01, SIGMA_RANGE[1], 200)
    values, _, _ = gradient_fields(fine_k, fine_s, horizon, s0_var)
    ks, sigmas = np.linspace(*K_RANGE, arrows), np.linspace(*SIGMA_RANGE, arrows)
    _, vanilla, natural = gradient_fields(ks, sigmas, horizon, s0_var)
    best = np.asarray(_optimal_gains(jnp.asarray(fine_s, jnp.float32), s0_var, horizon))
    k_star = best[0]

    # J spans orders of magnitude (it grows fast for unstable gains): contour -log(-J) levels.
    shade = np.log10(np.maximum(-values, 1e-12))
    levels = np.linspace(np.percentile(shade, 1), np.percentile(shade, 99), 15)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4), dpi=110, sharey=True, layout="constrained")
    for ax, field, title in ((axes[0], vanilla, "vanilla gradient ∇J"),
                             (axes[1], natural, "natural gradient F⁻¹∇J")):
        filled = ax.contourf(fine_k, fine_s, -shade, levels=-levels[::-1], cmap="viridis", alpha=0.8,
                             extend="both")
        ax.contour(fine_k, fine_s, -shade, levels=-levels[::-1], colors="k", linewidths=0.3, alpha=0.5)
        norm = np.linalg.norm(field, axis=-1, keepdims=True)
        unit = field / np.where(norm > 0, norm, 1.0)
        kk, ss = np.meshgrid(ks, sigmas)
        ax.quiver(kk, ss, unit[..., 0], unit[..., 1], color="white", pivot="mid", scale=25, width=0.004)
        ax.plot(best, fine_s, "--", color="tab:red", linewidth=1.2, label="best gain k*(σ)")
        ax.plot([k_star], [0.0], marker="*", markersize=16, color="tab:red", clip_on=False,
                label=f"optimum (k*={k_star:.3f}, σ→0)")
        ax.set_xlim(*K_RANGE)
        ax.set_ylim(0.0, SIGMA_RANGE[1])
        ax.set_xlabel("gain k")
        ax.xaxis.set_major_locator(matplotlib.ticker.MultipleLocator(0.4))
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
    axes[0].set_ylabel("exploration σ")
    start = "s₀ = 0" if s0_var == 0 else f"s₀ ~ N(0, {s0_var:g})"
    fig.suptitle(f"a ~ N(k s, σ²), s' = s + a, r = -s² - a², T = {horizon}, {start}; "
                 "arrows: direction only; shading: -log₁₀(-J)")
    fig.colorbar(filled, ax=axes, shrink=0.95, format="%.1f", label="-log₁₀(-J)  (higher is better)")
    fig.savefig(out, format="png")
    plt.close(fig)


def summary_text(horizon: int = HORIZON, s0_var: float = S0_VAR, sigma: float = 0.05,
                 gains: Sequence[float] = (0.0, -1.5)) -> str:
    """The figures the documentation quotes: how steeply the vanilla gradient points at
    sigma = 0 (|dJ/dsigma| / |dJ/dk|) at a small sigma, and the best gain as sigma -> 0."""
    ratios = []
    for k in gains:
        grad = np.asarray(vanilla_gradient(jnp.asarray(k), jnp.asarray(sigma), horizon, s0_var))
        ratios.append(f"{abs(grad[1]) / abs(grad[0]):.1f} at k = {k:g}")
    k_star = optimal_gain(1e-3, horizon, s0_var)
    return (f"At sigma = {sigma:g} the vanilla gradient's |dJ/dsigma| / |dJ/dk| is {', '.join(ratios)}; "
            f"the best gain as sigma -> 0 is k* = {k_star:.3f} (T = {horizon}, s0 variance {s0_var:g}).")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="natural_gradient_field.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default: {DEFAULT_OUT})")
    parser.add_argument("--horizon", type=int, default=HORIZON, help=f"episode length T (default: {HORIZON})")
    parser.add_argument("--s0-var", type=float, default=S0_VAR,
                        help="variance of the start state; 0 starts every episode at s = 0 (default)")
    parser.add_argument("--write", action="store_true",
                        help="also write the quoted figures into docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.horizon < 2:
        parser.error("--horizon must be at least 2 (with one step the k-direction carries no information)")
    if not args.s0_var >= 0:
        parser.error("--s0-var must be non-negative")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        parser.exit(1, "natural_gradient_field.py: matplotlib is not installed: pip install 'pgrun[plot]'\n")
    try:
        plot(args.out, args.horizon, args.s0_var)
    except OSError as err:
        parser.exit(1, f"natural_gradient_field.py: cannot write {args.out} ({err.strerror or err})\n")
    print(f"wrote {args.out}", file=sys.stderr)
    text = summary_text(args.horizon, args.s0_var)
    print(text)
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from docs_section import write_block

        write_block("natural-gradient-field", f"Written by `python scripts/natural_gradient_field.py --write`: {text}",
                    "## Natural vs vanilla gradient")


if __name__ == "__main__":
    main()
