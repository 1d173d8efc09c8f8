"""How documents' requests are packed into decode batches (`scoring.Scorer.batches`): the two
facts the rest of the package needs without importing llama.cpp."""

from __future__ import annotations

# requests packed into one decode batch at most (each a sequence of the KV cache)
SEQUENCES_PER_BATCH = 64

# the packing's name, stored with every run: results from another packing are not reused
PACKING = "in-order-v1"
