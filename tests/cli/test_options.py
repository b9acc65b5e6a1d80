"""Shared click pieces of the domain command groups (stacklab.cli.options)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from stacklab.cli.options import (
    LengthType,
    QuantityType,
    check_suffix,
    opened_stack,
    output_option,
    parse_length,
    parse_shape,
    progress_option,
    write_csv,
)


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("100nm", "nm", 100.0),
        ("0.1um", "nm", 0.1 * 1e3),
        ("0.1µm", "nm", 0.1 * 1e3),
        ("0.1μm", "nm", 0.1 * 1e3),  # Greek mu
        ("-5UM", "nm", -5000.0),
        ("250", "nm", 250.0),
        ("0.4mm", "m", 0.4 * 1e-3),
        ("400 um", "m", 400 * 1e-6),
        ("55e-6m", "m", 55e-6),
        ("2", "m", 2.0),
        ("3nm", "m", 3 * 1e-9),
        (1.5, "m", 1.5),
    ],
)
def test_parse_length_units(text, unit, expected):
    assert parse_length(text, unit=unit) == expected  # the same float as a literal scale factor


def test_parse_length_errors_name_the_option():
    with pytest.raises(click.BadParameter, match=r"e\.g\. 0\.4mm") as info:
        parse_length("10 parsec", "--defocus", unit="m", examples="0.4mm")
    assert info.value.param_hint == "--defocus"
    with pytest.raises(click.BadParameter, match="not a length"):
        parse_length("mm")
    with pytest.raises(ValueError, match="unit must be one of"):
        LengthType("furlong", "1nm")


def test_length_type_in_a_command():
    @click.command()
    @click.option("--z", type=LengthType("nm", "100nm"), default="1um")
    def cmd(z):
        click.echo(repr(z))

    runner = CliRunner()
    assert runner.invoke(cmd, []).output.strip() == "1000.0"
    assert runner.invoke(cmd, ["--z", "2.5nm"]).output.strip() == "2.5"
    res = runner.invoke(cmd, ["--z", "3 lightyears"])
    assert res.exit_code == 2 and "--z" in res.output and "not a length" in res.output


def test_parse_shape_and_suffix():
    assert parse_shape("128X64") == (128, 64)
    with pytest.raises(click.BadParameter, match="ROWSxCOLS"):
        parse_shape("128")
    check_suffix(Path("a.CSV"), (".csv",), "must end in .csv")  # case is ignored
    with pytest.raises(click.BadParameter, match=r"must end in \.csv") as info:
        check_suffix(Path("a.txt"), (".csv",), "must end in .csv")
    assert info.value.param_hint == "--output"


def test_output_and_progress_options(tmp_path):
    @click.command()
    @output_option("Where.")
    @progress_option()
    def cmd(output, progress):
        click.echo(f"{type(output).__name__} {output.name} {progress}")

    runner = CliRunner()
    res = runner.invoke(cmd, ["-o", str(tmp_path / "x.csv"), "--no-progress"])
    assert res.output.strip().endswith("x.csv False")
    assert "Path" in res.output
    assert runner.invoke(cmd, []).exit_code == 2  # -o is required


def test_opened_stack_closes_the_file(tmp_path):
    from stacklab.io import write_hdf5

    path = tmp_path / "s.h5"
    data = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    write_hdf5(path, {"data": data})
    with opened_stack(path, "data") as stack:
        np.testing.assert_array_equal(stack[:], data)
    assert stack.closed
    with pytest.raises(RuntimeError), opened_stack(path, "data") as stack:
        raise RuntimeError("boom")
    assert stack.closed


def test_write_csv_round_trip(tmp_path):
    table = pd.DataFrame({"frame": [0, 1], "x [nm]": [1.5, -2.0]})
    path = tmp_path / "t.csv"
    write_csv(table, path)
    pd.testing.assert_frame_equal(pd.read_csv(path), table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]  # no temporary left


def test_quantity_type_pairs_and_angles():
    @click.command()
    @click.option("--step", type=QuantityType("length", "m", "0.4A", bare="a", pair=True))
    @click.option("--angle", type=QuantityType("angle", "rad", "25mrad", bare="mrad"))
    def cmd(step, angle):
        click.echo(f"{step[0]:.3e} {step[1]:.3e} {angle:.4f}")

    runner = CliRunner()
    out = runner.invoke(cmd, ["--step", "0.4,50pm", "--angle", "25"]).output.split()
    assert [float(v) for v in out] == pytest.approx([0.4e-10, 0.5e-10, 0.025])
    out = runner.invoke(cmd, ["--step", "2A", "--angle", "0.01rad"]).output.split()
    assert [float(v) for v in out] == pytest.approx([2e-10, 2e-10, 0.01])
    res = runner.invoke(cmd, ["--step", "1,2,3"])
    assert res.exit_code == 2 and "give one value or 'y,x'" in res.output
    with pytest.raises(ValueError, match="bare must be one of"):
        QuantityType("angle", "rad", "1rad", bare="deg")
