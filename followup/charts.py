"""The patient workspace's charts: one patient's results over months since day 0, drawn as SVG.

Drawing is the slow part (tens of milliseconds a chart), reading the points is one query: the SVGs are kept
in the cache under a digest of everything drawn (the points, the infusions, the language), so a page drawn
once is drawn again only when the patient's data or the language changed, and a change is never missed.

Chinese labels need a font with CJK glyphs: `cjk_font()` finds one among the installed fonts (Debian's
fonts-noto-cjk, as in .ci/run) and puts it after matplotlib's default font, which falls back to it glyph
by glyph (matplotlib 3.6 and later). SVG text is drawn as paths, so the reader's browser needs no font.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections import defaultdict
from decimal import Decimal

from django.core.cache import cache
from django.utils.translation import get_language, gettext

from followup.computations import censored_text
from followup.constants import VisitOutcome
from followup.models import Result

MIN_MONTHS_SHOWN = 3


def _month_axis(ax, months) -> None:
    """Months since day 0 on the x-axis, from day 0 (or the earliest point) to at least month 3, in whole
    months: a single time point is drawn in the frame of follow-up rather than alone on a tiny range."""
    from matplotlib.ticker import MaxNLocator

    low = min([0.0, *months])
    high = max([float(MIN_MONTHS_SHOWN), *months])
    margin = (high - low) * 0.04
    ax.set_xlim(low - margin, high + margin)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _svg(fig, plt) -> str:
    buffer = io.StringIO()
    fig.tight_layout()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


# A censored value is drawn at its limit as an open triangle pointing where the true value lies (below "<10",
# above ">2000") and labelled with its sign, never as an exact point (docs/clinical-rules.md, "Censored results").
CENSORED_MARKERS = {"<": "v", "<=": "v", ">": "^", ">=": "^"}


def _mark_censored(ax, points) -> None:
    for x, y, comparator in points:
        if not comparator:
            continue
        marker = CENSORED_MARKERS[comparator]
        ax.plot([x], [y], linestyle="none", marker=marker, markersize=8, markerfacecolor="white", gid="censored")
        text = censored_text(Decimal(str(y)), comparator)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)


# The series of the patient page, in this order: the disease activity, the kidney, serology, blood counts.
PATIENT_CHART_CODES = ("SLEDAI2K", "PROT24H", "CREAT", "EGFR", "C3", "C4", "ADSDNA", "WBC", "PLT", "HGB")
CHART_CACHE_SECONDS = 7 * 24 * 3600
CHART_CACHE_VERSION = 1  # raise when the drawing changes, so charts drawn before are not shown again

# Fonts with the CJK glyphs of Simplified Chinese, the first found is used (Noto from fonts-noto-cjk first).
CJK_FONT_NAMES = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "Noto Serif CJK SC",
    "AR PL UMing CN",
)


@functools.cache
def cjk_font() -> str | None:
    """The family name of an installed font with CJK glyphs, added to matplotlib's font fallback list (after
    its default sans-serif font, which draws the Latin text, per glyph); None when no such font is installed."""
    import matplotlib
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    found = next((name for name in CJK_FONT_NAMES if name in installed), None)
    if found is not None:
        # A generic family ("sans-serif") stands for one font only; fallback runs over the families listed.
        matplotlib.rcParams["font.family"] = ["sans-serif", found]
    return found


def pyplot():
    """matplotlib's pyplot on the Agg backend, with the CJK font in the fallback list."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cjk_font()
    return plt


def patient_chart_points(*, patient, infusions=None) -> dict:
    """What the patient's charts draw: each series' points (months since day 0, value, comparator) and the
    infusions (months since day 0). Two queries: the infusions (none when the caller has read them, in
    infusion order, as `infusions`) and the results."""
    from patients.services import day_zero, local_date

    transplants = list(patient.transplants.order_by("infusion_number")) if infusions is None else infusions
    start = day_zero(patient, transplants)
    if start is None:
        return {}
    months = [round((local_date(t.infused_at, patient.site) - start).days / 30.44, 4) for t in transplants]
    series: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    rows = (
        Result.objects.filter(
            visit__patient=patient, visit__outcome=VisitOutcome.COMPLETED, code__in=PATIENT_CHART_CODES
        )
        .order_by()
        .values_list("code", "visit__actual_date", "value", "comparator")
    )
    for code, actual, value, comparator in rows:
        series[code].append((round((actual - start).days / 30.44, 4), float(value), comparator or ""))
    return {"infusions": months, "series": {code: sorted(points) for code, points in series.items()}}


def patient_charts(*, patient, infusions=None) -> dict[str, str]:
    """SVG charts of one patient's SLEDAI-2K, proteinuria, creatinine, eGFR, C3, C4, anti-dsDNA and blood
    counts over months since day 0, each y-axis labelled with its unit, the infusions marked; from the
    cache when the same points were drawn before in the same language."""
    data = patient_chart_points(patient=patient, infusions=infusions)
    if not data:
        return {}
    digest = hashlib.sha256(json.dumps([data, get_language()], sort_keys=True).encode()).hexdigest()
    key = f"patient-charts:{CHART_CACHE_VERSION}:{patient.pk}:{digest}"
    figures = cache.get(key)
    if figures is None:
        figures = draw_patient_charts(data)
        cache.set(key, figures, CHART_CACHE_SECONDS)
    return figures


def draw_patient_charts(data: dict) -> dict[str, str]:
    """The SVGs of `patient_chart_points`' data: one chart per series with points, in PATIENT_CHART_CODES
    order; the infusions as dashed red lines."""
    from followup.catalogue import ANALYTES

    plt = pyplot()
    infusions = data["infusions"]
    figures = {}
    for code in PATIENT_CHART_CODES:
        points = [tuple(p) for p in data["series"].get(code, [])]
        if not points:
            continue
        analyte = ANALYTES[code]
        fig, ax = plt.subplots(figsize=(4.2, 2.4))
        exact = [i for i, p in enumerate(points) if not p[2]]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markevery=exact)
        _mark_censored(ax, points)
        for month in infusions:
            ax.axvline(month, color="tab:red", linestyle="--", linewidth=1)
        _month_axis(ax, [p[0] for p in points] + infusions)
        ax.set_title(code_title(code), fontsize=9)
        ax.set_ylabel(analyte.unit, fontsize=7)
        ax.set_xlabel(gettext("months since day 0 (dashed: infusions)"), fontsize=7)
        ax.tick_params(labelsize=7)
        figures[code] = _svg(fig, plt)
    return figures


def code_title(code: str) -> str:
    """A chart's title: SLEDAI-2K by its name, the others by the catalogue's label in the active language."""
    from followup.catalogue import ANALYTES

    return "SLEDAI-2K" if code == "SLEDAI2K" else gettext(ANALYTES[code].label)
