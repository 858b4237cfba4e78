"""The facets scientists search by, from a file's global attributes and its path.

CMIP6 and CMIP7 files carry their facets as global attributes (``source_id``,
``experiment_id``, ``variant_label`` ...); CORDEX files spell some differently (``model_id``,
``driving_model_ensemble_member``, ``CORDEX_domain``). Where an attribute is missing, the
file name (``<variable>_<table>_<source>_<experiment>_<member>_<grid>[_<time>].nc`` in CMIP,
``<variable>_<domain>_<driving>_<experiment>_<member>_<rcm>_<version>_<frequency>[_<time>].nc``
in CORDEX) and a ``v<YYYYMMDD>`` directory of the path fill them in. The time range is the
file's time coordinate decoded with its own calendar (``cftime``), as ISO dates.
"""

from __future__ import annotations

import re
from typing import Any

from .dates import iso_dates

FACETS = (
    "project",
    "activity_id",
    "institution_id",
    "source_id",
    "experiment_id",
    "member_id",
    "table_id",
    "frequency",
    "grid_label",
    "variable_id",
    "version",
    "domain",
    "driving_source_id",
    "realm",
)

# facet -> global attributes that give it, first present wins (CMIP6/CMIP7, then CORDEX)
_ATTRS: dict[str, tuple[str, ...]] = {
    "project": ("mip_era", "project_id", "project"),
    "activity_id": ("activity_id", "project_id"),
    "institution_id": ("institution_id", "institute_id"),
    "source_id": ("source_id", "model_id"),
    "experiment_id": ("experiment_id", "driving_experiment_name"),
    "table_id": ("table_id",),
    "frequency": ("frequency",),
    "grid_label": ("grid_label",),
    "variable_id": ("variable_id",),
    "domain": ("domain_id", "CORDEX_domain", "domain"),
    "driving_source_id": ("driving_source_id", "driving_model_id"),
    "realm": ("realm", "modeling_realm"),
}

_VERSION = re.compile(r"^v\d{8}$")
_TIME_PART = re.compile(r"^\d{4,}(-\d{4,})?(-clim)?$")


def facets(attrs: dict[str, Any], source: str) -> dict[str, str | None]:
    """The facets of one file, ``None`` where neither attributes nor path give one.

    Examples
    --------
    >>> facets({"mip_era": "CMIP6", "source_id": "IPSL-CM6A-LR", "variant_label": "r1i1p1f1",
    ...         "sub_experiment_id": "none"}, "/data/v20180803/tas.nc")["member_id"]
    'r1i1p1f1'
    """
    out: dict[str, str | None] = {}
    for facet, names in _ATTRS.items():
        out[facet] = next((_text(attrs[n]) for n in names if _text(attrs.get(n))), None)
    out["member_id"] = _member(attrs)
    parts = [p for p in re.split(r"[/\\]", source) if p]
    out["version"] = next((p for p in reversed(parts[:-1]) if _VERSION.match(p)), None)
    for facet, value in _from_name(parts[-1] if parts else "", out).items():
        if out.get(facet) is None:
            out[facet] = value
    return {f: out.get(f) for f in FACETS}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _member(attrs: dict[str, Any]) -> str | None:
    variant = _text(attrs.get("variant_label")) or _text(attrs.get("member_id"))
    if variant is None:
        return _text(attrs.get("driving_model_ensemble_member")) or _text(
            attrs.get("ensemble_member")
        )
    sub = _text(attrs.get("sub_experiment_id"))
    return variant if sub in (None, "none") or variant.startswith(f"{sub}-") else f"{sub}-{variant}"


def _from_name(name: str, known: dict[str, str | None]) -> dict[str, str]:
    """Facets from a CMIP or CORDEX file name (only when it has the expected shape)."""
    stem = re.sub(r"\.(nc|nc4|h5|hdf5?)$", "", name)
    bits = stem.split("_")
    if bits and _TIME_PART.match(bits[-1]):
        bits = bits[:-1]
    if len(bits) == 6 and re.match(r"^g[a-z0-9]+$", bits[5]):
        keys = ("variable_id", "table_id", "source_id", "experiment_id", "member_id", "grid_label")
        return dict(zip(keys, bits, strict=True))
    if len(bits) == 8 and (known.get("project") or "").upper().startswith("CORDEX"):
        keys = (
            "variable_id",
            "domain",
            "driving_source_id",
            "experiment_id",
            "member_id",
            "source_id",
            "rcm_version",
            "frequency",
        )
        return {k: v for k, v in zip(keys, bits, strict=True) if k in FACETS}
    return {}


def time_range(coords: dict[str, dict[str, Any]]) -> tuple[str | None, str | None]:
    """The first and last time of the file as ISO dates, from the recorded coordinate range
    of its time-like dimension (units ``"<unit> since <date>"``), decoded with its calendar."""
    for dim in sorted(coords, key=lambda d: d != "time"):
        c = coords[dim]
        units = c.get("units") or ""
        if " since " not in units or c.get("min") is None:
            continue
        calendar = c.get("calendar") or "standard"
        dates = iso_dates([c["min"], c["max"]], units, calendar)  # without cftime, mostly
        if dates is None:
            try:
                import cftime

                dates = [
                    d.isoformat() for d in cftime.num2date([c["min"], c["max"]], units, calendar)
                ]
            except (ValueError, TypeError, OverflowError):
                continue
        first, last = (text.replace("T00:00:00", "") for text in dates)
        return first, last
    return None, None
