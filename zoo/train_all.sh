#!/usr/bin/env bash
# Reproduce every model shipped in asd/data/models (ONNX + JSON), one after the other.
# Needs the torch extra: pip install torch==2.13.0 onnx onnxruntime mlxtend scikit-learn
# Extra arguments go to train.py, e.g. `zoo/train_all.sh --only mnist_lenet digits_cnn`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-$here/../.venv/bin/python}"
exec "$py" "$here/train.py" --all "$@"
