"""HTML that mlx writes embeds data that no name, text or label can break (issue 20, mechanism 4, failure 8)."""

import html
import json
import re

import numpy as np
import pytest

from attention.html import render_viewer
from common.htmlsafe import fill_template, script_json

HOSTILE = [
    "m<!--<script>",
    "</script><script>alert(1)</script>",
    "a & b > c < d",
    "line\u2028sep\u2029para",
    "__DATA__",
    "__TITLE__",
    '"quoted" \\ back',
    "<!--",
    "]]>",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_script_json_is_the_same_value_without_any_character_that_can_end_or_bend_a_script(value):
    document = {"name": value, "list": [value, {value: value}]}
    text = script_json(document)
    assert json.loads(text) == document
    assert not re.search("[<>&\u2028\u2029]", text)


def test_script_json_refuses_nan_which_the_browser_cannot_parse():
    with pytest.raises(ValueError):
        script_json({"x": float("nan")})


def test_fill_template_does_not_fill_a_value_again():
    assert fill_template("<t>__A__</t>__B__", {"__A__": "__B__", "__B__": "x"}) == "<t>__B__</t>x"


def _data_block(page: str) -> str:
    (block,) = re.findall(r'<script type="application/json" id="mlx-data">(.*?)</script>', page, re.DOTALL)
    return block


@pytest.mark.parametrize("model", HOSTILE)
def test_the_attention_viewer_carries_any_model_name_token_and_source_intact(model):
    rng = np.random.default_rng(0)
    weights = rng.random((1, 1, 3, 3))
    weights /= weights.sum(-1, keepdims=True)
    page = render_viewer(weights, ["[CLS]", model, "[SEP]"], np.ones(3) / 3, model, model, note=model)
    block = _data_block(page)
    assert "<" not in block  # no "</script", "<!--" or "<script" can end or bend the block
    payload = json.loads(block)
    assert payload["model"] == payload["source"] == payload["note"] == payload["tokens"][1] == model
    title = re.search(r"<title>(.*?)</title>", page, re.DOTALL).group(1)
    assert title == f"mlx attention: {html.escape(model)}"  # escaped, and filled once (a slot name stays text)


def test_attention_show_of_a_model_folder_with_a_hostile_name_writes_an_intact_page(tiny_bert, tmp_path):
    """Failure 8 end to end: `mlx attention show --model 'm<!--<script>'` (here a local folder of that name)."""
    import shutil

    from tests.helpers import invoke

    model = tmp_path / "m<!--<script>"
    shutil.copytree(tiny_bert, model)
    out = tmp_path / "out"
    result = invoke("attention", "show", "--model", model, "--text", "the cup </script>", "--out", out)
    assert result.exit_code == 0, result.output
    block = _data_block((out / "attention.html").read_text())
    assert "<" not in block and json.loads(block)["model"] == str(model)
