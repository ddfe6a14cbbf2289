#!/usr/bin/env bash
# The GPU checks of issues 20 and 22, run as one call on a lent GPU machine (the device tool):
#   1. quant_pretraining's bf16 vs FP8 training step at GPT-2 S/M/L/XL shapes (gpu_fp8_step.py; nothing
#      starts after 170 s);
#   2. efficient_transformers at medium scale, stages efficiency + step: the attention curves to 16K in
#      bf16 at FlashAttention's setting and the whole-model training step, beside ../shared/bench's anchors;
#      the quality stage is not run (its targets read "not run").
# Sized to end inside one 10-minute call.
# Usage there: REPRO_GIT_COMMIT=<commit> bash scripts/gpu_checks.sh   (carry .whl: torchao's unpacked wheel)
# Everything it writes lands in $OUT (the files the device tool brings back).
set -u
out=${OUT:-/tmp/gpu_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$out/gpu.txt"
start=$(date +%s)
timeout 260 python3 -m papers.quant_pretraining.gpu_fp8_step --budget-s 170 --out "$out/gpu_fp8_step.json" \
    ${TORCHAO_PATH:+--torchao-path "$TORCHAO_PATH"} > "$out/fp8_step.log" 2>&1
echo "fp8 step rc=$? wall=$(( $(date +%s) - start ))s" | tee -a "$out/gpu.txt"
start=$(date +%s)
timeout 300 python3 -m papers.efficient_transformers.reproduce --scale medium --stages efficiency,step,report \
    --publish --out /tmp/runs > "$out/effx_medium.log" 2>&1
echo "effx medium rc=$? wall=$(( $(date +%s) - start ))s" | tee -a "$out/gpu.txt"
tar czf "$out/effx_medium.tgz" papers/efficient_transformers/results/medium 2>/dev/null
