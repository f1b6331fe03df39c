"""``LLM_STREAM_<NAME>_FILE``: a setting's value read from a file (a mounted secret)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource, SettingsError


class FileValuesSource(PydanticBaseSettingsSource):
    """``LLM_STREAM_<NAME>_FILE=/path``: the setting's value is that file's content, without
    its trailing newline (a Kubernetes secret mounted as a file). Where both ``<NAME>`` and
    ``<NAME>_FILE`` are set, the file wins; a file that cannot be read stops the process."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = f"{self.config.get('env_prefix', '')}{field_name}_FILE".upper()
        path = os.environ.get(variable)
        if path is None:
            return None, field_name, False
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise SettingsError(
                f"{variable}={path}: cannot read the file ({error.strerror or error})"
            ) from None
        return text.rstrip("\r\n"), field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, is_complex = self.get_field_value(field, name)
            if value is not None:
                values[key] = self.prepare_field_value(name, field, value, is_complex)
        return values
