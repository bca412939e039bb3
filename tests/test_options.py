"""common/options.py: the one grammar for list options, and its use by the probe CLI."""

import pytest

from common import ConfigError
from common.options import layers_in, parse_floats, parse_ints, parse_layer, parse_layers, parse_names


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4", (4,)),
        ("4,5,6", (4, 5, 6)),
        ("4-6", (4, 5, 6)),
        ("1,3-4", (1, 3, 4)),
        (" 6 , 4 ", (6, 4)),
        ("4,4,5", (4, 5)),
        ("last", "last"),
        ("ALL", "all"),
    ],
)
def test_layer_grammar(text, expected):
    assert parse_layer(text) == expected


@pytest.mark.parametrize("text", ["", "x", "3-1", "-1", "4-", "1.5", ","])
def test_layer_grammar_refuses_with_the_forms(text):
    with pytest.raises(ConfigError, match="--layer"):
        parse_layer(text)


def test_layers_repeat_as_selections_and_resolve_against_a_model():
    assert parse_layers(["4", "4,5,6", "4-6", "last"]) == ((4,), (4, 5, 6), "last")
    assert layers_in("last", 6) == (6,) and layers_in("all", 2) == (0, 1, 2) and layers_in((1, 2), 2) == (1, 2)
    with pytest.raises(ConfigError, match="layers 0..2"):
        layers_in((3,), 2)


def test_numbers_are_typed_deduplicated_and_finite():
    assert parse_ints("1,5,5,10", "--k", minimum=1) == (1, 5, 10)
    assert parse_ints(["1", "2,3"], "--k") == (1, 2, 3)
    assert parse_floats("0.1,1e-3,0.1", "--C", positive=True) == (0.1, 0.001)
    for bad, message in (
        ("nan", "finite"),
        ("inf", "finite"),
        ("0", "positive"),
        ("-1", "positive"),
        ("a", "cannot read 'a'"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_floats(bad, "--C", positive=True)
    with pytest.raises(ConfigError, match="below 1"):
        parse_ints("0,5", "--k", minimum=1)
    with pytest.raises(ConfigError, match="is empty"):
        parse_ints(" , ", "--k")


def test_names_are_checked_against_the_choices():
    assert parse_names(["Mean,cls", "mean"], "--pooling", ["mean", "cls"]) == ("mean", "cls")
    with pytest.raises(ConfigError, match="unknown value 'avg'; choose from mean, cls"):
        parse_names("avg", "--pooling", ["mean", "cls"])


def test_probe_layer_forms_give_one_selection_and_edge_C_is_warned(tmp_path):
    """`--layer 1-2`, `1,2` and `1,2,2` concatenate the same layers once; a C on the grid's edge extends the grid, said aloud."""
    import json

    from probes.synthetic import write_synthetic_store
    from tests.helpers import invoke

    store = write_synthetic_store(tmp_path / "s.h5")
    result = invoke(
        "probe",
        "logreg",
        "--store",
        store,
        "--pooling",
        "mean",
        "--layer",
        "1-2",
        "--layer",
        "1,2,2",
        "--C",
        "1e-6,1e-5",
        "--json",
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["results"]
    params = row["params"]
    assert params["layers"] == [1, 2] and params["C_grid"][:2] == [1e-06, 1e-05]
    # C=1e-5 lay on the grid's upper edge: the grid grew, said aloud, until the choice was inside or the bound hit
    assert params["C_grid_extended"] and params["C_grid"][2:] == params["C_grid_extended"]
    assert "C grid extended to" in result.stderr
    if params["C_on_grid_edge"]:
        assert params["C"] == max(params["C_grid"]) and "on the edge of the C grid" in result.stderr
    else:
        assert min(params["C_grid"]) < params["C"] < max(params["C_grid"])
