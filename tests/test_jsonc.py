"""The small JSON-with-comments editor (fmapi.py section 3) that OpenCode's opencode.jsonc and
Pi's models.json go through: it reads what those agents read, and changes only the members
fmapi sets or removes, so every other byte (comments, order, layout, line endings) stays."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fmapi  # noqa: E402

RICH = """\
// My OpenCode settings.
{
  "$schema": "https://opencode.ai/config.json",
  /* a block
     comment */
  "theme": "tokyonight", // trailing comment
  "url": "http://example.com/a//b", // "//" inside a string is not a comment
  "esc": "quote \\" and /* not a comment */",
  "provider": {
    "mine": { "options": { "baseURL": "http://127.0.0.1:9" } },
  },
  "list": [1, 2.5e3, -0, true, false, null,],
}
"""


def test_reads_comments_trailing_commas_and_strings_that_look_like_comments():
    value = fmapi.jsonc_load(RICH)
    assert value["url"] == "http://example.com/a//b"
    assert value["esc"] == 'quote " and /* not a comment */'
    assert value["provider"]["mine"]["options"]["baseURL"] == "http://127.0.0.1:9"
    assert value["list"] == [1, 2500.0, 0, True, False, None]


@pytest.mark.parametrize("text, line", [
    ('{\n  "a": 1\n  "b": 2\n}', 3),
    ('{\n  "a": /* open\n', 2),
    ("{\n  'a': 1\n}", 2),
    ('{"a": 1} x', 1),
    ('[1, 2]', None),
])
def test_refuses_what_is_not_json_with_comments_and_names_the_line(text, line):
    with pytest.raises(fmapi.JsoncError) as info:
        fmapi.jsonc_load(text)
    if line:
        assert str(info.value).startswith("line %d:" % line)


@pytest.mark.parametrize("keys", [("provider", "databricks-fmapi"), ("model",), ("provider", "mine", "options", "headers"),
                                  ("brand", "new", "nested")])
def test_set_then_remove_gives_back_every_byte(keys):
    value = {"npm": "@ai-sdk/openai", "options": {"baseURL": "https://ws/serving-endpoints"}}
    changed = fmapi.jsonc_set(RICH, keys, value)
    parsed = fmapi.jsonc_load(changed)
    for key in keys:
        parsed = parsed[key]
    assert parsed == value
    assert "// My OpenCode settings." in changed and "/* a block" in changed and "// trailing comment" in changed
    restored = fmapi.jsonc_remove(changed, keys)
    for depth in range(len(keys) - 1, 0, -1):  # containers the set created
        if fmapi.jsonc_find(restored, keys[:depth]) is not None and fmapi.jsonc_find(restored, keys[:depth])["value"] == {}:
            restored = fmapi.jsonc_remove(restored, keys[:depth])
    assert restored == RICH


def test_replacing_a_value_keeps_its_neighbours_and_comments():
    changed = fmapi.jsonc_set(RICH, ("theme",), "opencode")
    assert changed == RICH.replace('"theme": "tokyonight", // trailing comment', '"theme": "opencode", // trailing comment')
    assert fmapi.jsonc_set(changed, ("theme",), raw='"tokyonight"') == RICH


def test_objects_without_trailing_commas_crlf_and_empty_files():
    text = '{\r\n  "a": 1 // note\r\n}\r\n'
    changed = fmapi.jsonc_set(text, ("b",), {"c": 2})
    assert changed == '{\r\n  "a": 1, // note\r\n  "b": {\r\n    "c": 2\r\n  }\r\n}\r\n'
    assert fmapi.jsonc_remove(changed, ("b",)) == text
    assert json.loads(fmapi.jsonc_set("", ("p", "q"), 1)) == {"p": {"q": 1}}
    assert json.loads(fmapi.jsonc_set("{}", ("p",), 1)) == {"p": 1}


def test_a_member_that_is_not_an_object_is_not_overwritten():
    with pytest.raises(fmapi.JsoncError):
        fmapi.jsonc_set('{"provider": "x"}', ("provider", "databricks-fmapi"), {})


def test_duplicate_keys_edit_the_one_the_agent_reads():
    changed = fmapi.jsonc_set('{"m": 1, "m": 2}', ("m",), 3)
    assert changed == '{"m": 1, "m": 3}' and fmapi.jsonc_load(changed) == {"m": 3}
