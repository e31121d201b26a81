"""Sizes as people write them: everywhere plait asks for a size it takes bytes or a string
with a unit ("512MiB", "2GB"), as Dask's ``memory_limit`` does."""

from __future__ import annotations

import pytest

import plait
from plait.compiler.units import parse_bytes
from plait.executor.cli import parser


@pytest.mark.parametrize(("text", "nbytes"), [
    ("1024", 1024), ("2GB", 2 * 10**9), ("2 gb", 2 * 10**9), ("512MiB", 512 << 20),
    ("1.5GiB", 3 << 29), ("64k", 64_000), ("10B", 10), (4096, 4096)])
def test_sizes_read_as_dask_reads_them(text, nbytes):
    assert parse_bytes(text) == nbytes


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "2 parsecs", "1e3xb"])
def test_a_size_that_is_not_one_says_how_to_write_it(text):
    with pytest.raises(ValueError, match="with a unit such as 512MiB or 2GB"):
        parse_bytes(text)


def test_plait_start_takes_a_store_size_with_a_unit():
    args = parser().parse_args(["start", "--head", "--store-memory", "2GB"])
    assert args.store_memory == 2 * 10**9


def test_plait_start_refuses_a_size_it_cannot_read(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["start", "--head", "--store-memory", "lots"])
    assert "cannot read 'lots' as a size" in capsys.readouterr().err


def test_init_refuses_a_size_it_cannot_read_before_starting_anything():
    with pytest.raises(ValueError, match="cannot read 'lots' as a size"):
        plait.init(store_memory="lots")
    assert not plait.is_initialized()
