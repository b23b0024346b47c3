"""The results table never crops a name, a k or an interval, whatever the terminal width."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from rich.console import Console

from evidence.views.render import results_rich_table

ROWS = [
    ("physical-health-condition", "", 47, 76, 0.3412, None, 0.28, 0.41, 0.07, 0.62,
     "sigma2=0.0055/0.0120, I2=48.3%", "QM=1.251, p=0.307"),
    ("physical-health-condition", "online_professional", 11, 20, 0.4, None, 0.32, 0.47, 0.27,
     0.52, "sigma2=0.0000/0.0019, I2=10.2%", ""),
    ("mental-overall", "", 73, 118, 0.5512, None, 0.47, 0.62, -0.02, 1.12,
     "sigma2=0.0394/0.0409, I2=78.5%", ""),
]  # fmt: skip
COLUMNS = ["view", "level", "k_studies", "k_effects", "estimate", "error", "ci_lb", "ci_ub",
           "pi_lb", "pi_ub", "heterogeneity", "test"]  # fmt: skip


def _render(width: int) -> str:
    frame = pd.DataFrame(ROWS, columns=COLUMNS)
    frame.attrs["title"] = "Results (SIMULATED data)"
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(results_rich_table(frame, console))
    return console.export_text()


@pytest.mark.parametrize("width", [72, 80, 100, 120, 160])
def test_names_counts_and_intervals_are_whole_at_every_width(width: int) -> None:
    text = _render(width)
    assert max(len(line) for line in text.splitlines()) <= width
    for piece in ("physical-health-condition", "  online_professional", "mental-overall",
                  " 118 ", " 76 ", "0.55", "0.47 to 0.62", "SIMULATED"):  # fmt: skip
        assert piece in text, (width, piece)


def test_a_wide_terminal_shows_every_column_and_a_narrow_one_says_what_is_left_out() -> None:
    wide, narrow = _render(160), _render(80)
    assert "-0.02 to 1.12" in wide and "I2=78.5%" in wide and "QM=1.251" in wide
    assert "I2=78.5%" not in narrow and "--json" in narrow


def test_an_interval_bound_that_rounds_to_zero_prints_without_a_minus_sign() -> None:
    from evidence.views.render import _interval

    assert _interval(-0.0012, 1.1234) == "0.00 to 1.12"
    assert _interval(-0.0051, 0.5) == "-0.01 to 0.50"
