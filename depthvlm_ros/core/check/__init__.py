"""Model-folder checks made without loading weights, and the memory a folder needs.

* :mod:`.headers`: safetensors headers and the shard index (names, shapes, dtypes, sizes,
  truncation, missing / extra / duplicated shards);
* :mod:`.memory`: the memory estimate (weights in the target dtype, KV cache of held frames,
  activations) and the refusal before loading when the device cannot hold it;
* :mod:`.folder`: :func:`validate_model_folder`, everything ``depthvlm check`` reports
  (config keys, weights against the architecture built on the meta device, tokenizer special
  tokens, processor settings, resize mode, memory), as a :class:`CheckReport`.

The ROS node's configure step can call ``validate_model_folder(path, dtype, device,
frame_history=...)`` and ``report.raise_if_failed()`` for one clear error line.
"""

from . import folder as _folder
from . import headers as _headers
from . import memory as _memory
from .folder import PICKLE_SUFFIXES, CheckReport, Finding, expected_weight_shapes, validate_model_folder
from .headers import (DTYPE_BYTES, INDEX_FILE, SINGLE_FILE, HeaderError, SafetensorsHeader, TensorInfo,
                      WeightLayout, read_safetensors_header, read_weight_layout)
from .memory import (DTYPE_NAMES, SKIP_MEMORY_CHECK_ENV, MemoryEstimate, available_memory,
                     default_image_tokens, ensure_memory_fits, estimate_memory, format_bytes,
                     memory_shortfall)

# Every public name of the three modules, as each module lists it.
__all__ = [*_folder.__all__, *_headers.__all__, *_memory.__all__]
