"""Ways into the cohort report: parsing a filter from a request, and the three renderings."""

from __future__ import annotations

import csv
import datetime as dt
import io

from django.core.exceptions import ValidationError
from django.template.loader import render_to_string

from followup.reports import CohortFilter, charts, cohort_report, report_csv_rows
from registry.constants import TissueSource


def parse_filter(params) -> CohortFilter:
    """A CohortFilter from query parameters: site (repeatable or comma-separated), cell_source, infusions,
    enrolled_from, enrolled_to, compare. Bad values are refused naming the parameter."""
    errors = {}
    sites = [code for value in params.getlist("site") for code in value.split(",") if code]
    cell_source = params.get("cell_source", "")
    if cell_source and cell_source not in TissueSource.values:
        errors["cell_source"] = f"Use one of {', '.join(TissueSource.values)}."
    infusions = params.get("infusions", "")
    if infusions not in ("", "single", "double"):
        errors["infusions"] = "Use 'single' or 'double'."
    compare = params.get("compare", "cell_source")
    if compare not in ("cell_source", "infusions"):
        errors["compare"] = "Use 'cell_source' or 'infusions'."
    dates = {}
    for name in ("enrolled_from", "enrolled_to"):
        value = params.get(name)
        if value:
            try:
                dates[name] = dt.date.fromisoformat(value)
            except ValueError:
                errors[name] = "Give a date as YYYY-MM-DD."
    if errors:
        raise ValidationError(errors)
    return CohortFilter(site_codes=sites, cell_source=cell_source, infusions=infusions, compare=compare, **dates)


def render_html(*, study, site_ids, flt: CohortFilter, standalone: bool = True) -> str:
    report = cohort_report(study=study, site_ids=site_ids, flt=flt)
    figures = charts(study=study, site_ids=site_ids, flt=flt)
    return render_to_string(
        "followup/cohort_report.html",
        {"report": report, "figures": figures, "standalone": standalone, "study": study},
    )


def render_csv(report: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in report_csv_rows(report):
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue()
