"""The cohort report's figures: results over time per group and Kaplan-Meier curves, drawn as SVG."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from django.utils.translation import gettext

from followup.charts import _month_axis, _svg, pyplot
from registry.models import Study
from reporting.cohort import (
    CODE_INDEX,
    COMPARISON_LABELS,
    CohortFacts,
    CohortFilter,
    _facts,
    cohort,
    group_label,
    survival,
)


def charts(
    *, study: Study, site_ids, flt: CohortFilter | None = None, facts: CohortFacts | None = None
) -> dict[str, str]:
    """SVG figures: SLEDAI-2K and proteinuria over time (mean ± SE per group), and Kaplan-Meier curves.
    `facts`: the cohort's `cohort_facts`, when the caller has them already (the report page)."""
    from lifelines import KaplanMeierFitter

    plt = pyplot()
    flt = flt or CohortFilter()
    offsets = dict(study.visit_definitions.values_list("code", "offset_days"))
    if facts is None:
        facts = _facts(cohort(study, site_ids, flt), flt.compare, list(offsets))
    group_rows = defaultdict(list)
    for f in facts.patients:
        group_rows[f.group].append(f.index)
    figures = {}
    for code, label in (
        ("SLEDAI2K", "SLEDAI-2K"),
        ("PROT24H", "24-h proteinuria (g/24h)"),
        ("EGFR", "eGFR (mL/min/1.73 m²)"),
        ("C3", "C3 (g/L)"),
    ):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        by_group: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for group, members in group_rows.items():
            for visit_code, offset in offsets.items():
                column = facts.values[members, facts.visit(visit_code), CODE_INDEX[code]]
                column = column[~np.isnan(column)]
                if column.size:
                    by_group[group][offset].extend(column.tolist())
        for group, points in sorted(by_group.items()):
            days = sorted(points)
            means = [np.mean(points[d]) for d in days]
            ses = [np.std(points[d], ddof=1) / math.sqrt(len(points[d])) if len(points[d]) > 1 else 0 for d in days]
            ax.errorbar(
                [d / 30.44 for d in days], means, yerr=ses, marker="o", capsize=3, label=group_label(flt.compare, group)
            )
        _month_axis(ax, [d / 30.44 for points in by_group.values() for d in points])
        ax.set_xlabel(gettext("months since first infusion"))
        ax.set_ylabel(label)
        if by_group:
            ax.legend(title=str(COMPARISON_LABELS[flt.compare]), fontsize=8)
        figures[code] = _svg(fig, plt)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    surv = survival(facts)["_raw"]
    for name, (durations, events) in (("overall survival", surv["os"]), ("relapse-free survival", surv["rfs"])):
        if durations:
            KaplanMeierFitter(label=name).fit([d / 30.44 for d in durations], events).plot_survival_function(ax=ax)
    _month_axis(ax, [d / 30.44 for d in surv["os"][0] + surv["rfs"][0]])
    ax.set_xlabel(gettext("months since first infusion"))
    ax.set_ylim(0, 1.05)
    figures["survival"] = _svg(fig, plt)
    return figures
