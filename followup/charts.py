"""The patient workspace's charts: one patient's results over months since day 0, drawn as SVG."""

from __future__ import annotations

import io
from collections import defaultdict
from decimal import Decimal

from django.utils.translation import gettext

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


def patient_charts(*, patient) -> dict[str, str]:
    """SVG charts of one patient's SLEDAI-2K, proteinuria, eGFR, C3 and anti-dsDNA over months since day 0,
    with the infusions marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from patients.services import day_zero, local_date

    start = day_zero(patient)
    if start is None:
        return {}
    infusions = [(local_date(t.infused_at, patient.site) - start).days / 30.44 for t in patient.transplants.all()]
    series: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    rows = Result.objects.filter(
        visit__patient=patient,
        visit__outcome=VisitOutcome.COMPLETED,
        code__in=["SLEDAI2K", "PROT24H", "EGFR", "C3", "ADSDNA"],
    ).values_list("code", "visit__actual_date", "value", "comparator")
    for code, actual, value, comparator in rows:
        series[code].append(((actual - start).days / 30.44, float(value), comparator))
    labels = {
        "SLEDAI2K": "SLEDAI-2K",
        "PROT24H": "proteinuria g/24h",
        "EGFR": "eGFR",
        "C3": "C3 g/L",
        "ADSDNA": "anti-dsDNA IU/mL",
    }
    figures = {}
    for code, label in labels.items():
        points = sorted(series.get(code, []))
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 2.4))
        exact = [i for i, p in enumerate(points) if not p[2]]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markevery=exact)
        _mark_censored(ax, points)
        for month in infusions:
            ax.axvline(month, color="tab:red", linestyle="--", linewidth=1)
        _month_axis(ax, [p[0] for p in points] + infusions)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(gettext("months since day 0 (dashed: infusions)"), fontsize=7)
        ax.tick_params(labelsize=7)
        figures[code] = _svg(fig, plt)
    return figures
