from postroom.lib.csvsafe import safe_cell


def test_formula_cells_are_neutralised_and_others_kept() -> None:
    assert safe_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert safe_cell("+1") == "'+1"
    assert safe_cell("-2") == "'-2"
    assert safe_cell("@cmd") == "'@cmd"
    assert safe_cell("\t=1") == "'\t=1"
    assert safe_cell("ann@example.com") == "ann@example.com"
    assert safe_cell(3) == 3
    assert safe_cell(None) == ""
