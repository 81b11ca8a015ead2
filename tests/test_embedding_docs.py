"""The examples of docs/embedding.rst and docs/scaled_loss.rst run and print
what the pages say (Sphinx renders them but does not execute them)."""

import doctest
import pathlib

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("page", ["embedding.rst", "scaled_loss.rst"])
def test_doc_page_examples(page):
    result = doctest.testfile(
        str(DOCS / page),
        module_relative=False,
        optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
        raise_on_error=False,
        verbose=False,
    )
    assert result.attempted > 10
    assert result.failed == 0
