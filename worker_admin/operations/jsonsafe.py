"""Values as the audit log's jsonb can hold them, whichever face recorded them."""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

# A \u0000 escape in JSON text that is not itself an escaped backslash followed by "u0000".
NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def audit_safe(data: Any) -> Any:
    """`data` as the audit log's jsonb can hold it: JSON types only, no NUL characters (jsonb
    refuses them; the json payload column does not)."""
    try:
        text = json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, default=str)
        return json.loads(NUL_ESCAPE.sub("\\1\ufffd", text))
    except (RecursionError, ValueError):
        return {"unrecorded": "the values were nested too deeply to record"}
