"""Data into HTML pages that no model name, text or label can break (every page mlx writes uses these).

``script_json`` is JSON for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` are
written as ``\\u003c``, ``\\u003e``, ``\\u0026`` (so ``</script>``, ``<!--`` and ``<script`` cannot occur:
inside a script block ``<!--<script`` switches the HTML parser into a state where ``</script>`` no
longer ends it, and the page never runs), and U+2028/U+2029 as escapes (line terminators to
pre-2019 JavaScript). The result is the same JSON value. ``fill_template`` puts each slot in one
pass, so a value that holds another slot's name is not filled again.
"""

import json
import re
from typing import Any

_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_UNSAFE = re.compile("[<>&\u2028\u2029]")


def script_json(obj: Any) -> str:
    """``obj`` as JSON safe to embed raw in a ``<script>`` element (nan/inf refused: the browser cannot parse them)."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    return _SCRIPT_UNSAFE.sub(lambda m: _SCRIPT_ESCAPES[m.group()], text)


def fill_template(template: str, slots: dict[str, str]) -> str:
    """Replace each ``slots`` key in ``template`` by its value, in one pass (values are not searched again)."""
    if not slots:
        return template
    pattern = re.compile("|".join(re.escape(name) for name in sorted(slots, key=len, reverse=True)))
    return pattern.sub(lambda m: slots[m.group()], template)
