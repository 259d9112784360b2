"""Money as the gauges show it: billing stores minor units (cents), Prometheus gets units."""

from __future__ import annotations

# ISO 4217 currencies whose minor unit is not a hundredth.
_MINOR_DIGITS: dict[str, int] = dict.fromkeys(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "UYI",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ],
    0,
) | dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3)


def major_units(minor: int, currency: str) -> float:
    """An amount in minor units as currency units: 1234 USD cents is 12.34, 1234 JPY 1234."""
    return minor / 10.0 ** _MINOR_DIGITS.get(currency, 2)
