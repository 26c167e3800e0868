"""The published JSON Schemas (draft 2020-12) of ctbench's files, and one validator for them.

``record.schema.json``: result records (:mod:`ctbench.record`); ``manifest.schema.json``: the manifest of a
prepared folder (:mod:`ctbench.data.prepared`). Both are validated when written and when read.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any


@functools.cache
def _validator(name: str) -> Any:
    import jsonschema

    schema = json.loads(resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def schema(name: str) -> dict[str, Any]:
    """The schema ``name`` (``record`` or ``manifest``) as a dict."""
    return dict(_validator(name).schema)


def problems(instance: Any, name: str, limit: int = 8) -> list[str]:
    """Where ``instance`` breaks schema ``name``, one line each (``protocol.manifest_sha256: missing``)."""
    out: list[str] = []
    for error in sorted(_validator(name).iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required":  # name the missing field itself
            out += [".".join([*path, k]) + ": missing" for k in error.validator_value if k not in error.instance]
        else:
            out.append(f"{'.'.join(path) or 'top level'}: {error.message}")
    return list(dict.fromkeys(out))[:limit]  # a field two rules require is named once
