"""Ways into the cohort report: parsing a filter from a request, and the three renderings."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

from django.core.exceptions import ValidationError
from django.template.loader import render_to_string
from django.utils.translation import gettext, gettext_lazy, ngettext

from core.spreadsheets import SpreadsheetSafeWriter
from registry.constants import TissueSource
from reporting.charts import charts
from reporting.cohort import (
    COMPARISON_LABELS,
    CohortFilter,
    cohort_facts,
    cohort_report,
    group_label,
    report_csv_rows,
)

BASELINE_LABELS = {
    "age_years": gettext_lazy("Age (years)"),
    "disease_duration_years": gettext_lazy("Disease duration (years)"),
}
SURVIVAL_LABELS = {"overall": gettext_lazy("Overall survival"), "relapse_free": gettext_lazy("Relapse-free survival")}
TEST_LABELS = {
    "m12_sledai_change_mann_whitney_p": gettext_lazy("M12 SLEDAI-2K change, Mann–Whitney U test"),
    "m12_remission_fisher_p": gettext_lazy("M12 remission, Fisher's exact test"),
    "overall_survival_logrank_p": gettext_lazy("Overall survival, log-rank test"),
}


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


def filter_sentence(flt: CohortFilter) -> str:
    """The filter in words, e.g. "Filter: cell source Umbilical cord; single infusion. Groups compared by cell
    source." """
    parts = []
    if flt.site_codes:
        sites = ngettext("site %(sites)s", "sites %(sites)s", len(flt.site_codes))
        parts.append(sites % {"sites": ", ".join(flt.site_codes)})
    if flt.cell_source:
        parts.append(gettext("cell source %(source)s") % {"source": group_label("cell_source", flt.cell_source)})
    if flt.infusions:
        parts.append(group_label("infusions", flt.infusions))
    if flt.enrolled_from:
        parts.append(gettext("enrolled from %(date)s") % {"date": flt.enrolled_from.isoformat()})
    if flt.enrolled_to:
        parts.append(gettext("enrolled up to %(date)s") % {"date": flt.enrolled_to.isoformat()})
    return gettext("Filter: %(filter)s. Groups compared by %(compare)s.") % {
        "filter": "; ".join(parts) if parts else gettext("all transplanted patients"),
        "compare": COMPARISON_LABELS[flt.compare],
    }


def _in_words(report: dict, flt: CohortFilter) -> dict:
    """The report's codes (groups, tests, curves, baseline variables) as the HTML names them."""
    comparison = report["comparison"]
    return {
        "filter_sentence": filter_sentence(flt),
        "response_note": gettext(report["responses"]["note"]),
        "comparison_heading": gettext("Comparison by %(compare)s") % {"compare": COMPARISON_LABELS[comparison["by"]]},
        "comparison_groups": [(group_label(comparison["by"], name), g) for name, g in comparison["groups"].items()],
        "comparison_tests": [(TEST_LABELS.get(name, name), p) for name, p in comparison.get("tests", {}).items()],
        "survival_curves": [(SURVIVAL_LABELS.get(name, name), curve) for name, curve in report["survival"].items()],
        "baseline_rows": [
            (BASELINE_LABELS.get(name, name), s)
            for name, s in report["baseline"].items()
            if isinstance(s, dict) and s.get("n") is not None and name != "female"
        ],
    }


REPORT_CACHE_SECONDS = 24 * 3600
AUDITED_APPS = ("registry", "patients", "followup")  # every table the report reads is kept with its history


def data_version() -> str:
    """A digest that changes whenever the registry's data change, in one query of index lookups whatever the
    data size: the newest audit-history row of every audited table of the registry, patients and followup
    apps (every write through the services leaves one, deletions included; the batch endpoint copies them
    too), and the newest row of the patients, visits and results (rows loaded without history, as
    `seed_synthetic` does)."""
    from django.apps import apps
    from django.db import connection

    from followup.models import Result, Visit
    from patients.models import Patient

    qn = connection.ops.quote_name
    parts = []
    for label in AUDITED_APPS:
        for model in apps.get_app_config(label).get_models():
            history = getattr(model, "history", None)
            if history is not None and hasattr(history, "model"):
                parts.append(f"(SELECT MAX(history_id) FROM {qn(history.model._meta.db_table)})")
    for model in (Patient, Visit, Result):
        parts.append(f"(SELECT MAX({qn(model._meta.pk.column)}) FROM {qn(model._meta.db_table)})")
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(sorted(parts)))
        row = cursor.fetchone()
    return hashlib.sha256(repr((connection.settings_dict["NAME"], row)).encode()).hexdigest()[:32]


def render_html(*, study, site_ids, flt: CohortFilter, standalone: bool = True) -> str:
    return render_report(study=study, site_ids=site_ids, flt=flt, standalone=standalone)[0]


def render_report(*, study, site_ids, flt: CohortFilter, standalone: bool = True) -> tuple[str, dict]:
    """The report as HTML, and the report itself (the dict the JSON and CSV give)."""
    # The report and its charts come from the same facts: read once (the patients and their results).
    facts = cohort_facts(study=study, site_ids=site_ids, flt=flt)
    report = cohort_report(study=study, site_ids=site_ids, flt=flt, facts=facts)
    figures = charts(study=study, site_ids=site_ids, flt=flt, facts=facts)
    html = render_to_string(
        "reporting/cohort_report.html",
        {"report": report, "figures": figures, "standalone": standalone, "study": study, **_in_words(report, flt)},
    )
    return html, report


def render_csv(report: dict) -> str:
    buffer = io.StringIO()
    writer = SpreadsheetSafeWriter(buffer)
    for row in report_csv_rows(report):
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue()
