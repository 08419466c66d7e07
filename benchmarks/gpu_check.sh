#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (see BENCHMARKS.md, "GPU"):
# what is installed, the TensorRT tests, GPU parity and refresh latency.
# Usage: OUT=results/gpu bash benchmarks/gpu_check.sh   (wheels for missing packages in .whl/)
set -u
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  python3 -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>&1 | tail -1
  echo "libnvinfer on this machine: $(find / -xdev -name 'libnvinfer.so*' 2>/dev/null | head -3 | tr '\n' ' ')"
  python3 -m rlfm_edge info
} 2>&1 | tee "$OUT/env.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_tensorrt.py tests/test_torch_backend.py tests/test_inference_api.py -rs 2>&1 \
  | tee "$OUT/tests.txt" | tail -15
python3 benchmarks/gpu_parity.py --mdps 60 --seed 987654 --record "$OUT/gpu.md"
python3 -m rlfm_edge bench latency --backends tensorrt,torch,onnxruntime --precisions fp32,fp16,int8 \
  --states 16,64,256 --actions 8 --repeats 300 --out "$OUT" --record "$OUT/gpu.md"
