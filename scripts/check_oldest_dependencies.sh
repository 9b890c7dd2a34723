#!/usr/bin/env bash
# Install pgrun with the OLDEST versions its pyproject.toml allows for the core dependencies, in a
# fresh virtual environment, and run the tests that need nothing beyond them. A floor that does not
# hold (as gymnasium 1.0 did for the bridge's AutoresetMode) fails here rather than for a user.
#
#   bash scripts/check_oldest_dependencies.sh [VENV_DIR]   # default: a temporary directory
#   JAX_VERSION=0.7.0 bash scripts/check_oldest_dependencies.sh   # another jax/jaxlib than the floor
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-$(mktemp -d)/venv}"
python -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
pip install -q --upgrade pip
# Each core dependency at the lower bound pyproject.toml states (jaxlib with jax).
cat > "$venv/oldest.txt" <<PINS
jax==${JAX_VERSION:-0.6.0}
jaxlib==${JAX_VERSION:-0.6.0}
flax==0.10.0
optax==0.2.3
gymnasium==1.1.0
hydra-core==1.3.2
tensorboardX==2.6
numpy==1.26.0
PINS
pip install -q -c "$venv/oldest.txt" -e . pytest tensorboard
python -c "import jax, flax, optax, gymnasium; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'gymnasium', gymnasium.__version__)"
python -m pytest -q -x tests/test_config.py tests/test_advantages.py tests/test_natural.py tests/test_gym_bridge.py \
    tests/test_resume.py tests/test_registry.py tests/test_cli_e2e.py -k "not hopper"  # MuJoCo is an extra
