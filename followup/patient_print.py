"""The patient's one-page summary to print: who (subject code, never a name), the infusions, the visit
timeline with SLEDAI-2K, adverse events and medications, on a page with its own print stylesheet."""

from __future__ import annotations

from django.http import Http404
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext

from followup.constants import VisitState
from followup.models import AdverseEvent, Visit
from patients.models import ConcomitantMedication
from patients.services import day_zero


def patient_summary(patient) -> dict:
    """What the printed summary shows, read in five queries whatever the patient's history."""
    zone = patient.site.zone
    infusions = [
        {
            "number": t.infusion_number,
            "at": timezone.localtime(t.infused_at, zone),
            "lot": t.lot.lot_number,
            "source": t.lot.get_tissue_source_display(),
            "dose": t.dose_cells_per_kg,
            "weight": t.weight_kg,
        }
        for t in patient.transplants.select_related("lot").order_by("infusion_number")
    ]
    visits = [
        {
            "code": v.code,
            "label": v.label,
            "window_start": v.window_start,
            "window_end": v.window_end,
            "state": gettext(VisitState(v.state).label),
            "actual_date": v.actual_date,
            "sledai": getattr(getattr(v, "computed_outcome", None), "sledai", None),
        }
        for v in Visit.objects.filter(patient=patient)
        .with_state()
        .select_related("computed_outcome")
        .order_by("target_date")
    ]
    return {
        "patient": patient,
        "day_zero": day_zero(patient),
        "infusions": infusions,
        "visits": visits,
        "adverse_events": list(AdverseEvent.objects.filter(patient=patient).order_by("onset_date", "pk")),
        "medications": list(ConcomitantMedication.objects.filter(patient=patient).order_by("start_date", "pk")),
        "printed_at": timezone.localtime(),
    }


def patient_print_view(model_admin, request, object_id):
    """The print view of a patient the user may see (404 otherwise: the patient's site is not theirs)."""
    patient = model_admin.get_object(request, object_id)
    if patient is None or not model_admin.has_view_or_change_permission(request, patient):
        raise Http404
    context = {
        **model_admin.admin_site.each_context(request),
        "title": gettext("Patient summary: %(subject)s") % {"subject": patient.subject_code},
        **patient_summary(patient),
    }
    return TemplateResponse(request, "admin/followup/patient/print.html", context)
