"""GGUF files as Hugging Face directories: read once by transformers (dequantised), then cached by content.

transformers reads a GGUF file (with the `gguf` package) into an ordinary model, tokenizer and chat template,
but that takes a while and the model it returns refuses `save_pretrained` (a GGUF quantizer is attached).
So the weights are moved into a fresh model of the same config, saved as safetensors with the tokenizer,
and every later run loads that directory like any `model=hf` one. The cache entry is named by the file's
sha256, so an edited or replaced file is converted again, and it appears only when complete.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import os
import re
import time
from pathlib import Path

from sisearch.files import build_directory_once
from sisearch.registry import ConfigError

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
DONE_MARKER = "sisearch-gguf.json"
FORMAT = 1  # bump when the conversion changes what is written

_digests: dict[tuple[str, int, int], str] = {}


def gguf_reader_available() -> bool:
    """Whether transformers can read GGUF here (it needs the `gguf` package, recent enough)."""
    if importlib.util.find_spec("gguf") is None:
        return False
    from transformers.utils import is_gguf_available

    return is_gguf_available()


def require_gguf_reader(what: str, install: str) -> None:
    if not gguf_reader_available():
        raise ConfigError(f"{what} needs the 'gguf' package to read GGUF files; install it with: {install}")


def packaged_gguf(package: str, what: str, install: str) -> Path:
    """The one GGUF file inside an installed package, found without importing the package (its
    `__init__` may import things that are not installed)."""
    spec = importlib.util.find_spec(package)  # a top-level name: found on sys.path, not imported
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{what} needs the package '{package}', which is not installed; install it with: {install}")
    found = sorted(f for location in spec.submodule_search_locations for f in Path(location).glob("*.gguf"))
    if len(found) != 1:
        raise ConfigError(
            f"{what}: expected one .gguf file in the package '{package}' "
            f"({', '.join(spec.submodule_search_locations)}), found {len(found)}; reinstall it with: {install}"
        )
    return found[0]


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes (under a second for 100 MB), remembered per (path, size, mtime) in this
    process because the base path is asked for more than once per run."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        with open(path, "rb") as handle:
            _digests[key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return _digests[key]


def converted_dir(gguf: Path, cache_dir: str | Path) -> Path:
    """Where the HF directory converted from `gguf` lives in the cache (whether or not it exists yet)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", gguf.stem)[:64]
    return Path(os.path.expanduser(str(cache_dir))) / f"gguf-{stem}-{file_digest(gguf)[:16]}-v{FORMAT}"


def is_converted(gguf: Path, cache_dir: str | Path) -> bool:
    return (converted_dir(gguf, cache_dir) / DONE_MARKER).is_file()


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_gguf_header(path: Path) -> None:
    """A missing file or one that is not GGUF at all, in one line (cheap: four bytes are read)."""
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ValueError(
            f"{path} is not a GGUF file: it does not start with the bytes {GGUF_MAGIC!r} (it starts {magic!r})"
        )


def check_gguf_readable(path: Path) -> None:
    """A truncated or corrupt file, or an architecture transformers cannot read, in one line."""
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        # Parses the header and every tensor's extent (about 2 s for 100 MB): a truncated file fails here.
        field = GGUFReader(path).fields["general.architecture"]
        architecture = bytes(field.parts[field.data[0]]).decode("utf-8")
    except Exception as err:  # the reader raises whatever numpy does on a malformed file
        raise ValueError(f"{path} is not a readable GGUF file (truncated or corrupt?): {first_line(err)}") from None
    readable = [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer")]
    if architecture not in readable:
        raise ValueError(
            f"{path}: transformers cannot read GGUF models of architecture '{architecture}'; "
            f"it reads: {', '.join(readable)}"
        )


def convert_gguf(gguf: Path, target: Path) -> None:
    """Write `gguf` as an HF directory at `target`: float32 safetensors, tokenizer, chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain tensors; nothing is quantized any more
    with torch.device("meta"):  # no random init: every weight is assigned from the loaded model
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    # The GGUF tokenizer comes back without a length limit; the model's context is the real one.
    context = getattr(config, "max_position_embeddings", None)
    if context:
        tokenizer.model_max_length = context
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def ensure_converted(gguf: Path, cache_dir: str | Path) -> Path:
    """The HF directory converted from `gguf`, converting it first when the cache has none for its content."""
    directory = converted_dir(gguf, cache_dir)

    def convert(target: Path) -> dict:
        log.info("converting %s to a Hugging Face directory in %s (once; about a minute)", gguf, directory)
        start = time.time()
        convert_gguf(gguf, target)
        return {"source": str(gguf), "sha256": file_digest(gguf), "format": FORMAT, "seconds": time.time() - start}

    return build_directory_once(directory, DONE_MARKER, convert, prefix=".gguf-")


def prepare_gguf(gguf: Path, cache_dir: str | Path, what: str, install: str) -> None:
    """Every check that can fail, before any work. The file is parsed in full only when it has not been
    converted yet (a converted file was readable, and its content hash names the conversion)."""
    check_gguf_header(gguf)
    require_gguf_reader(what, install)
    if not is_converted(gguf, cache_dir):
        check_gguf_readable(gguf)


__all__ = [
    "check_gguf_header",
    "check_gguf_readable",
    "convert_gguf",
    "converted_dir",
    "ensure_converted",
    "file_digest",
    "packaged_gguf",
    "prepare_gguf",
    "require_gguf_reader",
]
