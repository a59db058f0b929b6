"""Imports every built-in component so that its `@register` runs."""

from sisearch.tasks import arith, gsm8k  # noqa: F401
from sisearch.models import hf as hf_model, tiny  # noqa: F401
from sisearch.engines import hf as hf_engine  # noqa: F401
from sisearch.search import baselines  # noqa: F401
from sisearch.rewards import orm  # noqa: F401
from sisearch.data import outcome  # noqa: F401
from sisearch.optim import dpo, sft  # noqa: F401
