"""Where a model's requests go when requests are routed by model: one topic per model, read by
one consumer group per model, so that each model's workers scale (and are watched) on their
own lag.

A model name may hold characters a topic name may not (``org/model``, ``:``); those become
``_`` and a short hash of the name is added, so two names never share a topic.
"""

from __future__ import annotations

import hashlib
import re

#: Kafka's legal topic characters; its longest name is 249 characters.
_ILLEGAL = re.compile(r"[^A-Za-z0-9._-]")
_LONGEST_SUFFIX = 120


def model_suffix(model: str) -> str:
    """``model`` as a topic or group name's suffix: itself when legal, else legal and hashed."""
    legal = _ILLEGAL.sub("_", model)
    if legal == model and len(model) <= _LONGEST_SUFFIX and model not in (".", ".."):
        return model
    digest = hashlib.sha256(model.encode()).hexdigest()[:10]
    return f"{legal[: _LONGEST_SUFFIX - 11]}-{digest}"


def model_requests_topic(requests_topic: str, model: str) -> str:
    """The requests topic of ``model``: ``<requests_topic>.<model>``."""
    return f"{requests_topic}.{model_suffix(model)}"


def model_group(worker_group_id: str, model: str) -> str:
    """The consumer group of the workers that serve ``model``."""
    return f"{worker_group_id}.{model_suffix(model)}"
